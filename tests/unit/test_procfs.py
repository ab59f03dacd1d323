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
