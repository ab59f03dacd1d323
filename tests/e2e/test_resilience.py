"""What an attacker with the public API did to the service, and what it must do instead:
through the real server (gunicorn, gevent) on the real daemon."""

from __future__ import annotations

import os
import time

import pytest
import requests
from websockets.exceptions import ConnectionClosed

# Every test here runs a real server on the real Docker daemon.
pytestmark = [pytest.mark.docker, pytest.mark.slow]

# Prints a line a millisecond and never reads its stdin.
PRINTS_WITHOUT_READING = r"""
#include <stdio.h>
#include <unistd.h>
int main(void) {
    for (;;) { fputs("a line of output that fills a pipe in a while\n", stdout); usleep(1000); }
}
"""
KIB = 1024


def worker_rss(server) -> int:
    """The resident memory of the server's workers (the gunicorn master's children), in bytes."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            if parent != server.process.pid:
                continue
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) * KIB for line in f if line.startswith("VmRSS:"))
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total


def wait_for(predicate, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while not (result := predicate()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return result


def test_a_program_that_reads_no_input_cannot_hold_its_session_past_the_run_timeout(make_server):
    # Input sent while it compiles used to be flushed by the output pump with a blocking write:
    # nothing read the program's output any more, Docker's kill timed out, and the session stayed
    # RUNNING, holding its slot, until a restart.
    server = make_server(workers=1, run_timeout=4, max_sessions=1, output_limit="10m")
    session_id = server.create(PRINTS_WITHOUT_READING, language="c")
    started = time.monotonic()
    with server.attach(session_id) as ws:
        for _ in range(8):
            ws.send({"type": "input", "data": "i" * (64 * KIB)})
        transcript = ws.read_to_end(60)
    assert transcript.final["reason"] == "timeout"
    assert time.monotonic() - started < 40, "the run outlived its run timeout by far"
    assert "a line of output" in transcript.text()
    assert server.session(session_id)["state"] == "TERMINATED"
    # Its slot is free again, and nothing of it is left.
    assert server.post("print('next')").status_code == 201
    assert wait_for(lambda: server.session_containers(session_id) == [])


def test_delete_ends_a_session_whose_program_reads_no_input(make_server):
    server = make_server(workers=1, run_timeout=60, output_limit="10m")
    session_id = server.create(PRINTS_WITHOUT_READING, language="c")
    with server.attach(session_id) as ws:
        for _ in range(8):
            ws.send({"type": "input", "data": "i" * (64 * KIB)})
        ws.read_stdout_until("a line of output", timeout=60)
        assert requests.delete(f"{server.url}/session/{session_id}", timeout=30).status_code == 204
        transcript = ws.read_to_end(30)
    assert transcript.final["reason"] == "killed"
    assert server.session(session_id)["state"] == "TERMINATED"


def test_a_flood_of_input_is_refused_with_1013_and_the_worker_does_not_grow(make_server):
    server = make_server(workers=1, output_limit="10m")
    session_id = server.create("import time\nprint('up', flush=True)\ntime.sleep(60)")
    before = worker_rss(server)
    assert before > 10 * (1 << 20), "the workers' memory was not found"
    # A message is at most 1 MiB, JSON and all.
    megabyte = "m" * (1000 * KIB)
    sent = 0
    with server.attach(session_id) as ws:
        ws.read_stdout_until("up")
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(300):
                ws.send({"type": "input", "data": megabyte})
                sent += 1
            ws.read_to_end(30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        assert "not reading" in closed.value.rcvd.reason
    grown = worker_rss(server) - before
    assert grown < 100 * (1 << 20), f"the worker grew by {grown >> 20} MB after {sent} MB of input"
    # The client that was closed is gone, and its session with it.
    final = wait_for(
        lambda: server.session(session_id)["state"] == "TERMINATED" and server.session(session_id)
    )
    assert final["reason"] == "client_disconnected"


def test_a_kill_goes_ahead_of_queued_input(make_server):
    server = make_server(workers=1)
    session_id = server.create("import time\nprint('up', flush=True)\ntime.sleep(60)")
    with server.attach(session_id) as ws:
        ws.read_stdout_until("up")
        for _ in range(2):  # more than the pipe holds: the rest waits in the server
            ws.send({"type": "input", "data": "q" * (900 * KIB)})
        sent = time.monotonic()
        ws.send({"type": "kill"})
        transcript = ws.read_to_end(30)
    assert transcript.final["reason"] == "killed"
    assert time.monotonic() - sent < 5


def test_a_resize_storm_is_coalesced_and_ends_at_its_last_size(server):
    code = (
        "import os, signal, time\n"
        "seen = 0\n"
        "def count(*_):\n"
        "    global seen\n"
        "    seen += 1\n"
        "signal.signal(signal.SIGWINCH, count)\n"
        "print('ready', flush=True)\n"
        "input()\n"
        "print('winches', seen, tuple(os.get_terminal_size()))\n"
    )
    response = server.post(code, tty=True)
    with server.attach(response.json()["sessionId"]) as ws:
        ws.read_stdout_until("ready")
        for i in range(400):
            ws.send({"type": "resize", "cols": 40 + i % 100, "rows": 20})
        ws.send({"type": "resize", "cols": 123, "rows": 45})
        time.sleep(0.5)  # the last size is applied when its interval is due
        ws.send({"type": "input", "data": "\r"})
        text = ws.read_to_end(30).text()
    winches = int(text.split("winches ")[1].split()[0])
    assert winches <= 40, f"{winches} SIGWINCHes for 401 resizes in a moment"
    assert "(123, 45)" in text


def test_signals_past_a_few_a_second_get_an_error_and_the_session_goes_on(server):
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGUSR1, lambda *_: None)\n"
        "print('ready', flush=True)\n"
        "print('got', input())\n"
    )
    with server.attach(server.create(code)) as ws:
        ws.read_stdout_until("ready")
        for _ in range(20):
            ws.send({"type": "signal", "signal": "SIGUSR1"})
        ws.send({"type": "input", "data": "still here\n"})
        transcript = ws.read_to_end(30)
    errors = [m for _, m in transcript.messages if m["type"] == "error"]
    assert errors and all("too many signals" in m["message"] for m in errors)
    assert transcript.text() == "ready\ngot still here\n"
    assert transcript.final["reason"] == "exited"
