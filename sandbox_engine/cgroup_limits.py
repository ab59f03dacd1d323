"""A sandbox's limits written into its cgroup on the host, as the runtime's update writes them.

Between a compile stage and its program the engine lowers the sandbox's limits to the run's, on
the session's path. Docker's update takes some 14 ms for it (dockerd, containerd, the shim, a
`runc update` process of its own); the same values written into the cgroup's files take a
fraction of a millisecond. The engine runs as root beside the daemon and can write them. Where it
cannot (no such cgroup seen from here, gVisor, another host) it says so, and the caller updates
through the runtime, which stays the record: after a write here, the caller makes the same update
off the session's path, so that what the runtime reports stays true.
"""

from __future__ import annotations

import os

# The CFS period runc sets with Docker's NanoCpus (microseconds): the quota is cpus times this.
CPU_PERIOD = 100_000


def write(
    pid: int,
    container_id: str,
    memory: int,
    cpus: float,
    pids: int,
    proc: str = "/proc",
    root: str = "/sys/fs/cgroup",
) -> bool:
    """Write memory (swap none: memory and swap together at the same), CPU and process limits
    into the cgroup of `pid`, a container's first process; only if that cgroup is the
    container's (its path names `container_id`: a pid may have been reused since). True once every
    one is written; False if any could not be (the caller then updates through the runtime)."""
    groups = _groups(pid, container_id, proc, root)
    if groups is None:
        return False
    quota = max(1000, int(cpus * CPU_PERIOD))
    try:
        if "" in groups:
            unified = groups[""]
            _write(unified, "memory.max", memory)
            _write(unified, "memory.swap.max", 0)
            _write(unified, "cpu.max", f"{quota} {CPU_PERIOD}")
            _write(unified, "pids.max", pids)
            return True
        memory_dir, cpu_dir, pids_dir = groups["memory"], groups["cpu"], groups["pids"]
        # The memory limit may never exceed memory and swap together: the lower one first.
        with open(os.path.join(memory_dir, "memory.limit_in_bytes")) as f:
            lowering = memory < int(f.read())
        names = ["memory.limit_in_bytes"]
        if os.path.exists(os.path.join(memory_dir, "memory.memsw.limit_in_bytes")):  # swap accounted
            names.append("memory.memsw.limit_in_bytes")
        for name in names if lowering else reversed(names):
            _write(memory_dir, name, memory)
        _write(cpu_dir, "cpu.cfs_period_us", CPU_PERIOD)
        _write(cpu_dir, "cpu.cfs_quota_us", quota)
        _write(pids_dir, "pids.max", pids)
    except (OSError, ValueError, KeyError):
        return False
    return True


def _groups(pid: int, container_id: str, proc: str, root: str) -> dict[str, str] | None:
    """The directories of pid's cgroups by controller (v1), or {"": the unified one} (v2)."""
    try:
        with open(os.path.join(proc, str(pid), "cgroup")) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    v1: dict[str, str] = {}
    unified = None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if container_id not in path:
            continue
        relative = path.lstrip("/")
        if controllers == "":
            unified = os.path.join(root, relative)
            continue
        for controller in controllers.split(","):
            v1[controller] = os.path.join(root, controllers, relative)
    if all(c in v1 for c in ("memory", "cpu", "pids")):
        return v1
    if unified is not None and not v1 and os.path.exists(os.path.join(unified, "memory.max")):
        return {"": unified}
    return None


def _write(directory: str, name: str, value: int | str) -> None:
    with open(os.path.join(directory, name), "w") as f:
        f.write(str(value))
