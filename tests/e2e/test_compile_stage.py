"""The compile stage's isolation, on the real daemon through the Docker executor: what code run at
compile time can and cannot reach of the launcher waiting beside it (see sandbox_engine.launch).

The compiler here is Python running the source: the simplest compiler that runs user code.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest
from harness import STARTED_INSTANCES

from sandbox_engine.config import Config
from sandbox_engine.docker_executor import DockerExecutor
from sandbox_engine.executor import COMPILE_GID, CompileResult, Limits, SandboxSpec, Started, Terminal
from sandbox_engine.uids import UidLeases

pytestmark = [pytest.mark.docker, pytest.mark.slow]

RUN = Limits(memory=256 << 20, cpus=0.5, pids=32, disk=64 << 20)
COMPILE = Limits(memory=1 << 30, cpus=1.0, pids=128, disk=64 << 20)

# Run at compile time: everything a process of the sandbox could try against the launcher and
# PID 1, each line saying what it got.
ATTACK = r"""
import errno, fcntl, glob, os, termios
print("ids", os.getuid(), os.getgid(), flush=True)
me = str(os.getpid())
tries = (("environ", os.O_RDONLY), ("mem", os.O_RDONLY), ("fd/0", os.O_RDWR), ("fd/1", os.O_WRONLY))
for pid in sorted(p for p in os.listdir("/proc") if p.isdigit() and p != me):
    for name, mode in tries:
        try:
            os.close(os.open(f"/proc/{pid}/{name}", mode))
            print(pid, name, "opened", flush=True)
        except OSError as e:
            print(pid, name, errno.errorcode[e.errno], flush=True)
# A compile stage's own terminal is left alone, unless it is the sandbox's (/dev/pts/0, the
# launcher's: a compile stage started ahead writes into it).
own = os.ttyname(2) if os.isatty(2) else None
for tty in glob.glob("/dev/pts/[0-9]*"):
    if tty == own and tty != "/dev/pts/0":
        continue
    try:
        fd = os.open(tty, os.O_RDWR | os.O_NOCTTY)
    except OSError as e:
        print(tty, "open", errno.errorcode[e.errno], flush=True)
        continue
    try:
        fcntl.ioctl(fd, termios.TIOCSTI, b"\n")
        print(tty, "typed", flush=True)
    except OSError as e:
        print(tty, "type", errno.errorcode[e.errno], flush=True)
"""
# The program: who it runs as, and under which memory limit.
PROGRAM = (
    "python3",
    "-c",
    "import os\n"
    "for p in ('/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes'):\n"
    "    if os.path.exists(p):\n"
    "        print('program', os.getuid(), os.getgid(), open(p).read().strip())",
)


def memory_limit(pid: int) -> int:
    """The memory limit of pid's cgroup, read on the host (v1 or v2)."""
    for line in open(f"/proc/{pid}/cgroup").read().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return int(open(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes").read())
        if controllers == "" and os.path.exists(f"/sys/fs/cgroup{path}/memory.max"):
            return int(open(f"/sys/fs/cgroup{path}/memory.max").read())
    raise AssertionError("no memory cgroup")


@pytest.fixture(scope="module")
def executor(docker_client):
    instance = f"t{uuid.uuid4().hex[:10]}"
    STARTED_INSTANCES.add(instance)
    config = Config()
    uids = UidLeases(config.uid_dir, config.uids)
    executor = DockerExecutor(instance, uids)
    yield executor
    left = executor.list()
    for info in left:
        executor.remove_sandbox(info)
    executor.close()
    assert not left and not uids.leases(instance), "the test left a sandbox or a uid behind"


# A warm pool's sandbox (no session yet) has its compile stage started ahead (see
# launch.compile_waiter), its output relayed by the launcher or, on a terminal, written into the
# sandbox's: the same principal.
@pytest.mark.parametrize(
    ("tty", "ahead"),
    [(False, False), (True, False), (False, True), (True, True)],
    ids=["pipes", "tty", "ahead", "tty-ahead"],
)
def test_code_run_at_compile_time_reaches_nothing_of_the_launcher(executor, tty, ahead):
    session_id = str(uuid.uuid4())
    spec = SandboxSpec(
        session_id=None if ahead else session_id,
        language="test",
        image="sandbox-engine/python:latest",
        source_file="build.py",
        command=PROGRAM,
        env={},
        limits=RUN,
        compile=("python3", "build.py"),
        compile_limits=COMPILE,
        tty=tty,
    )
    ref = executor.create(spec)
    assert (ref.compile_nonce is not None) == ahead
    sandbox = executor.claim(session_id, "ptest", ref)
    try:
        sandbox.start(ATTACK.encode(), Terminal())
        output = sandbox.output()
        compiled, items = b"", []
        for item in output:
            items.append(item)
            if isinstance(item, CompileResult):
                break
            if not isinstance(item, Started):
                compiled += item[1]
        assert isinstance(items[-1], CompileResult) and items[-1].exit_code == 0, compiled
        sandbox.set_limits(RUN)
        # In force once set_limits returns (written into its cgroup, see cgroup_limits), and what
        # Docker reports of them follows.
        pid = executor.api.inspect_container(ref.id)["State"]["Pid"]
        assert memory_limit(pid) == RUN.memory
        deadline = time.monotonic() + 10
        while executor.api.inspect_container(ref.id)["HostConfig"]["Memory"] != RUN.memory:
            assert time.monotonic() < deadline, "Docker's record of the limits did not follow"
            time.sleep(0.05)
        sandbox.go()
        ran = b"".join(item[1] for item in output if isinstance(item, tuple))
        assert sandbox.wait(30).exit_code == 0
    finally:
        sandbox.remove()
    lines = compiled.decode().replace("\r\n", "\n").splitlines()
    # The sandbox's uid, in the compile stage's group: another principal than the launcher.
    assert lines[0] == f"ids {ref.uid} {COMPILE_GID}"
    attempts = lines[1:]
    assert "1 environ EACCES" in attempts and "1 fd/1 EACCES" in attempts
    # Nothing of PID 1 or the launcher opened; a tty's terminal opened (the uid owns it), not typed in.
    got = [line for line in attempts if line.split()[-1] not in ("EACCES", "EPERM", "ENOENT", "ESRCH")]
    assert got == []
    assert ("/dev/pts/0 type EPERM" in attempts) == tty
    assert ran.decode().replace("\r\n", "\n") == f"program {ref.uid} {ref.uid} {RUN.memory}\n"
