"""The benchmark's baselines and host figures: what the same work costs without our API (a
native interpreter, `docker run`, the raw Docker API) and what the host and its sandboxes hold.
They run in the same process and moment as the API's figures, so that ratios between them hold
on a noisy machine.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import docker

from . import launch
from .config import Config
from .docker_executor import WORKDIR, DockerExecutor
from .executor import SANDBOX_USER
from .languages import LANGUAGES
from .specs import sandbox_spec
from .uids import UidLeases

HELLO = "print('hi')"


@dataclass
class Series:
    name: str
    samples: list[float] = field(default_factory=list)
    # Each sample's steps, where the API was measured (see bench_phases).
    phases: list = field(default_factory=list)

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


def server_pids(port: int) -> list[int]:
    """The processes listening on the port (gunicorn's master and workers share the socket)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                for line in list(f)[1:]:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        except OSError:
            pass
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        except OSError:
            continue
        if any(f"socket:[{inode}]" in links for inode in inodes):
            pids.append(int(pid))
    return pids


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))


def sandbox_memory(session_ids: list[str]) -> float:
    """The median memory an idle session's container is charged (its cgroup, less the inactive
    page cache, as `docker stats` counts it), over at most 20 of them."""
    api = docker.APIClient(version="1.41")
    charged = []
    try:
        for session_id in session_ids[:20]:
            for row in api.containers(filters={"name": session_id}):
                stats = api.stats(row["Id"], stream=False, one_shot=True)["memory_stats"]
                detail = stats.get("stats", {})
                inactive = detail.get("total_inactive_file", detail.get("inactive_file", 0))
                charged.append(stats["usage"] - inactive)
    finally:
        api.close()
    return statistics.median(charged) if charged else 0.0


# --- baselines -------------------------------------------------------------------------------
def native_python(runs: int) -> Series:
    def once() -> float:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-I", "-S", "-c", HELLO], stdout=subprocess.PIPE)
        process.stdout.readline()
        elapsed = time.perf_counter() - started
        process.wait()
        return elapsed

    once()
    return Series("python3 started natively", [once() for _ in range(runs)])


def docker_run(image: str, runs: int) -> Series:
    def once() -> float:
        started = time.perf_counter()
        process = subprocess.Popen(
            [
                "docker",
                "run",
                "--rm",
                "--network",
                "none",
                "--user",
                SANDBOX_USER,
                image,
                "python3",
                "-c",
                HELLO,
            ],
            stdout=subprocess.PIPE,
        )
        process.stdout.readline()
        elapsed = time.perf_counter() - started
        process.wait()
        return elapsed

    once()
    return Series("docker run --rm", [once() for _ in range(runs)])


def bare_container(api: docker.APIClient, image: str) -> tuple[str, socket.socket]:
    """A bare container of `image` running print('hi') (no limits, no init, no launcher), created,
    attached and started: its id and its attach stream's socket."""
    container = api.create_container(
        image,
        ["python3", "-c", HELLO],
        user=SANDBOX_USER,
        working_dir=WORKDIR,
        network_disabled=True,
        host_config=api.create_host_config(network_mode="none", log_config={"Type": "none"}),
    )["Id"]
    try:
        attached = api.attach_socket(container, params={"stdout": 1, "stderr": 1, "stream": 1})
        api.start(container)
    except BaseException:
        api.remove_container(container, force=True)
        raise
    return container, getattr(attached, "_sock", attached)


def raw_docker_api(image: str, runs: int) -> Series:
    """create -> attach -> start -> first output frame, with docker-py's low-level client."""
    api = docker.APIClient(version="1.41")

    def once() -> float:
        started = time.perf_counter()
        container, sock = bare_container(api, image)
        try:
            sock.recv(4096)
            elapsed = time.perf_counter() - started
            sock.close()
        finally:
            api.remove_container(container, force=True)
        return elapsed

    once()
    try:
        return Series("raw Docker API: create, attach, start, first output", [once() for _ in range(runs)])
    finally:
        api.close()


def docker_floor(config: Config, runs: int) -> Series:
    """Docker's own floor under a warm session: a sandbox started ahead of time (our image, our
    hardening, our launcher waiting on stdin, as the pool makes it), then attached with docker-py's
    attach_socket, the program written, until its first output byte. Only this part is timed."""
    executor = DockerExecutor(
        "bench-floor", UidLeases(config.uid_dir, config.uids), lock_dir=None, pool_size=4
    )
    spec = sandbox_spec(config, LANGUAGES["python"], None, False)

    def once() -> float:
        ref = executor.create(spec)
        # As a pool's sandbox waits before it is taken: the CPU quota (cpus 0.5, per 100 ms
        # period) its interpreter's start spent is refilled, or the program would wait for it.
        time.sleep(0.2)
        try:
            started = time.perf_counter()
            attached = executor.api.attach_socket(
                ref.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            )
            sock = getattr(attached, "_sock", attached)
            sock.sendall(launch.header(HELLO.encode(), None, launch.new_nonce(), False, (), False))
            seen = b""
            while b"hi" not in seen:
                data = sock.recv(4096)
                if not data:
                    raise RuntimeError("the floor's sandbox ended without output")
                seen += data
            elapsed = time.perf_counter() - started
            sock.close()
        finally:
            executor.remove_sandbox(executor_info(executor, ref.id))
        return elapsed

    try:
        once()
        return Series(
            "Docker floor: warm sandbox, attach_socket, program written, first output byte",
            [once() for _ in range(runs)],
        )
    finally:
        executor.close()


def executor_info(executor: DockerExecutor, container: str):
    """The floor's sandbox as listed, for its removal (which frees its uid too)."""
    return next(info for info in executor.list() if info.ref.id == container)


# --- the report ------------------------------------------------------------------------------


def runsc_version() -> str:
    try:
        answer = subprocess.run(["runsc", "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "version unknown"
    return answer.stdout.splitlines()[0] if answer.stdout else "version unknown"


def mem_total_gib() -> float:
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("MemTotal:")) / 2**20
