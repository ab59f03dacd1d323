"""Limits written into a sandbox's cgroup on the host (v1 and v2), on fake cgroup trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox_engine import cgroup_limits

ID = "c0ffee" * 10 + "abcd"
PID = 4242


def v1(tmp_path: Path, swap: bool = True, memory: int = 1 << 30) -> tuple[Path, Path]:
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    (proc / str(PID)).mkdir(parents=True)
    lines = ["9:name=systemd", "8:pids", "4:memory", "2:cpuacct", "1:cpu", "0:"]
    (proc / str(PID) / "cgroup").write_text("".join(f"{line}:/docker/{ID}\n" for line in lines))
    for controller, files in {
        "memory": {
            "memory.limit_in_bytes": memory,
            **({"memory.memsw.limit_in_bytes": memory} if swap else {}),
        },
        "cpu": {"cpu.cfs_period_us": 100000, "cpu.cfs_quota_us": 100000},
        "pids": {"pids.max": 128},
    }.items():
        directory = root / controller / "docker" / ID
        directory.mkdir(parents=True)
        for name, value in files.items():
            (directory / name).write_text(f"{value}\n")
    return proc, root


def read(root: Path, controller: str, name: str) -> str:
    return (root / controller / "docker" / ID / name).read_text().strip()


@pytest.mark.parametrize("swap", [True, False], ids=["swap accounted", "no swap accounting"])
def test_v1_limits_go_where_runc_writes_them(tmp_path, swap):
    proc, root = v1(tmp_path, swap)
    assert cgroup_limits.write(PID, ID, 256 << 20, 0.5, 32, str(proc), str(root))
    assert read(root, "memory", "memory.limit_in_bytes") == str(256 << 20)
    assert (root / "memory/docker" / ID / "memory.memsw.limit_in_bytes").exists() == swap
    if swap:
        assert read(root, "memory", "memory.memsw.limit_in_bytes") == str(256 << 20)
    assert (
        read(root, "cpu", "cpu.cfs_quota_us") == "50000"
        and read(root, "cpu", "cpu.cfs_period_us") == "100000"
    )
    assert read(root, "pids", "pids.max") == "32"


def test_v1_memory_and_swap_are_written_in_the_order_the_kernel_takes(tmp_path, monkeypatch):
    proc, root = v1(tmp_path, memory=256 << 20)
    written: list[str] = []
    real = cgroup_limits._write
    monkeypatch.setattr(cgroup_limits, "_write", lambda d, n, v: (written.append(n), real(d, n, v)))
    # Raising: swap and memory together first (the memory limit may never exceed it).
    assert cgroup_limits.write(PID, ID, 1 << 30, 1.0, 128, str(proc), str(root))
    assert written[:2] == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
    written.clear()
    # Lowering: memory first.
    assert cgroup_limits.write(PID, ID, 128 << 20, 0.5, 32, str(proc), str(root))
    assert written[:2] == ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]


def test_v2_limits_go_into_the_unified_group(tmp_path):
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    (proc / str(PID)).mkdir(parents=True)
    (proc / str(PID) / "cgroup").write_text(f"0::/system.slice/docker-{ID}.scope\n")
    group = root / "system.slice" / f"docker-{ID}.scope"
    group.mkdir(parents=True)
    for name in ("memory.max", "memory.swap.max", "cpu.max", "pids.max"):
        (group / name).write_text("max\n")
    assert cgroup_limits.write(PID, ID, 256 << 20, 0.5, 32, str(proc), str(root))
    values = {
        name: (group / name).read_text() for name in ("memory.max", "memory.swap.max", "cpu.max", "pids.max")
    }
    assert values == {
        "memory.max": str(256 << 20),
        "memory.swap.max": "0",
        "cpu.max": "50000 100000",
        "pids.max": "32",
    }


def test_nothing_is_written_where_the_cgroup_is_not_the_containers(tmp_path):
    proc, root = v1(tmp_path)
    # A reused pid, in another group: never written.
    assert not cgroup_limits.write(PID, "f" * 64, 256 << 20, 0.5, 32, str(proc), str(root))
    assert read(root, "memory", "memory.limit_in_bytes") == str(1 << 30)
    # No such process; a group whose files cannot be written: the caller asks the runtime.
    assert not cgroup_limits.write(PID + 1, ID, 256 << 20, 0.5, 32, str(proc), str(root))
    (root / "pids" / "docker" / ID / "pids.max").unlink()
    (root / "pids" / "docker" / ID).rmdir()
    assert not cgroup_limits.write(PID, ID, 256 << 20, 0.5, 32, str(proc), str(root))
