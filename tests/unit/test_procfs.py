"""Telling a program at a prompt from one that is silent for another reason, from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from sandbox_engine import procfs

WAITS = {
    "read": "input()",
    "select": "import select, sys; select.select([sys.stdin], [], [])",
    "poll": "import select, sys; p = select.poll(); p.register(sys.stdin, select.POLLIN); p.poll()",
    "epoll": "import select; e = select.epoll(); e.register(0, select.EPOLLIN); e.poll()",
}
NOT_WAITING = {
    "sleeping": "import time; time.sleep(30)",
    "spinning": "while True: pass",
    "reading a file": "import os; r, w = os.pipe(); os.read(r, 1)",
}


def settled(code: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
    time.sleep(0.3)  # until it sits in its system call (a state, not an event, to wait for)
    return process


@pytest.fixture
def program():
    started: list[subprocess.Popen] = []

    def start(code: str) -> subprocess.Popen:
        process = settled(code)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or procfs._CALLS.get(os.uname().machine) is None,
    reason="reading another process's system call needs root, on a known architecture",
)


@pytest.mark.parametrize("how", list(WAITS))
def test_a_program_waiting_on_its_stdin_is_seen(program, how):
    assert procfs.waiting_on_stdin([program(WAITS[how]).pid])


@pytest.mark.parametrize("what", list(NOT_WAITING))
def test_a_program_silent_for_another_reason_is_not(program, what):
    assert not procfs.waiting_on_stdin([program(NOT_WAITING[what]).pid])


def test_one_running_process_means_not_waiting(program):
    assert not procfs.waiting_on_stdin([program(WAITS["read"]).pid, program(NOT_WAITING["spinning"]).pid])


def test_a_process_gone_is_no_answer(program):
    assert not procfs.waiting_on_stdin([2**22 + 1])


def _fake_host(tmp_path, cgroup_lines: str, groups: dict[str, str]):
    """A /proc/<pid>/cgroup and a cgroup filesystem, as a host's, under tmp_path."""
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "41").mkdir(parents=True)
    (proc / "41" / "cgroup").write_text(cgroup_lines)
    for group, procs in groups.items():
        (root / group).mkdir(parents=True)
        (root / group / "cgroup.procs").write_text(procs)
    return {"proc": str(proc), "root": str(root)}


def test_a_containers_processes_from_its_v1_pids_cgroup(tmp_path):
    host = _fake_host(
        tmp_path,
        "9:name=systemd:/docker/abc\n8:pids:/docker/abc\n4:memory:/docker/abc\n0::/docker/abc\n",
        {"pids/docker/abc": "41\n43\n44\n"},
    )
    assert procfs.cgroup_pids(41, **host) == [41, 43, 44]


def test_a_containers_processes_from_its_v2_cgroup(tmp_path):
    host = _fake_host(
        tmp_path, "0::/system.slice/docker-abc.scope\n", {"system.slice/docker-abc.scope": "41\n42\n"}
    )
    assert procfs.cgroup_pids(41, **host) == [41, 42]


def test_no_answer_rather_than_a_wrong_group(tmp_path):
    # The root group (every process of the machine), a group without the process (read through
    # another cgroup namespace), a process gone: None, and the caller asks Docker instead.
    assert procfs.cgroup_pids(41, **_fake_host(tmp_path / "a", "0::/\n", {"": "1\n41\n"})) is None
    other = _fake_host(tmp_path / "b", "8:pids:/docker/abc\n", {"pids/docker/abc": "7\n8\n"})
    assert procfs.cgroup_pids(41, **other) is None
    assert procfs.cgroup_pids(42, **other) is None


def test_a_real_processes_cgroup_holds_it(program):
    pid = program(NOT_WAITING["sleeping"]).pid
    pids = procfs.cgroup_pids(pid)
    assert pids is None or pid in pids
