"""Watchers: share links, the read-only WebSocket that follows a session, revocation, the bound
on watchers, and a watcher that does not read, which must not slow the controller. Real server
with two workers (a watcher lands on either: on the run's own or relayed), real Docker."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import pytest
import requests
from harness import Attachment, Server, Transcript
from test_resume import COUNTER, EXPECTED, SLEEPER
from websockets.exceptions import ConnectionClosed, InvalidStatus

pytestmark = [pytest.mark.docker]

ECHO = "print('ready', flush=True)\nwhile True:\n    print('got ' + input(), flush=True)\n"
# About 12 MB of output as fast as the program writes it: far more than the buffers between the
# program and a watcher that does not read hold (its queue and the replay buffer, 256 KiB here;
# the server's socket's send buffer, up to 4 MiB).
FLOOD_LINES = 12000
FLOOD = (
    f"import sys\nfor i in range({FLOOD_LINES}):\n    sys.stdout.write(f'{{i:07d}} ' + 'x' * 1000 + '\\n')\n"
)


def refusal(attempt) -> tuple[int, dict]:
    with pytest.raises(InvalidStatus) as refused:
        attempt()
    response = refused.value.response
    return response.status_code, json.loads(response.body)["error"]


def test_watchers_from_start_and_from_now_see_the_run_with_its_seqs(make_server):
    server = make_server(workers=2)
    session_id = server.create(COUNTER)
    controller = server.attach(session_id)
    controller.read_stdout_until("line 10\n")
    link = server.share(session_id)
    token = link["watchToken"]
    assert link["url"] == f"{server.url}/watch/{session_id}?token={token}"
    page = requests.get(link["url"], timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")

    with server.watch(session_id, token) as start, server.watch(session_id, token, "now") as now:
        from_start = start.read_to_end()
        from_now = now.read_to_end()
        controller_seen = controller.read_to_end()

    # From the start: everything the buffer held (all of it here), `live`, then the rest.
    assert from_start.text() == EXPECTED and start.seqs[0] == 1 and not start.gaps
    live_at = [m for _, m in from_start.messages].index({"type": "live"})
    assert [m["type"] for _, m in from_start.messages[:live_at]].count("stdout") >= 10
    # From now: `live` first, then only what came after, numbered as the session numbers it.
    assert from_now.messages[0][1] == {"type": "live"}
    assert EXPECTED.endswith(from_now.text()) and 0 < len(from_now.text()) < len(EXPECTED)
    assert now.seqs == list(range(now.seqs[0], controller.last_seq + 1))
    assert from_start.final == from_now.final == controller_seen.final
    assert from_start.final["reason"] == "exited"
    # Everyone attached heard the count go to 1 and 2 (no seq: the harness checks it has none).
    counts = [m["count"] for _, m in controller_seen.messages if m["type"] == "watchers"]
    assert counts[:2] == [1, 2], counts
    assert {"type": "watchers", "count": 2} in [m for _, m in from_start.messages]


def test_a_watcher_s_input_signal_and_kill_are_refused_and_the_session_carries_on(make_server):
    server = make_server(workers=2)
    session_id = server.create(ECHO)
    with server.attach(session_id) as controller:
        controller.read_stdout_until("ready\n")
        with server.watch(session_id, server.share(session_id)["watchToken"]) as watcher:
            watcher.read_until(lambda m: m["type"] == "live")
            for message in (
                {"type": "input", "data": "from the watcher\n"},
                {"type": "signal", "signal": "SIGKILL"},
                {"type": "kill"},
                {"type": "detach"},
            ):
                watcher.send(message)
                error = watcher.read_until(lambda m: m["type"] == "error")
                assert error["code"] == "read_only", error
            controller.send({"type": "input", "data": "from the controller\n"})
            assert watcher.read_stdout_until("got from the controller\n") == (
                "ready\ngot from the controller\n"
            )
        assert controller.read_stdout_until("got from the controller\n") == "ready\ngot from the controller\n"
        controller.send({"type": "kill"})
        assert controller.read_to_end().final["reason"] == "killed"


def test_revoking_closes_the_watchers_and_refuses_their_links(make_server):
    server = make_server(workers=2)
    session_id = server.create(SLEEPER)
    with server.attach(session_id) as controller:
        controller.read_stdout_until("up\n")
        token = server.share(session_id)["watchToken"]
        watcher = server.watch(session_id, token)
        watcher.read_until(lambda m: m["type"] == "live")
        assert requests.delete(f"{server.url}/session/{session_id}/watchers", timeout=10).status_code == 204
        with pytest.raises(ConnectionClosed) as closed:
            watcher.read_to_end(10)
        assert closed.value.rcvd.code == 4403 and "revoked" in closed.value.rcvd.reason
        # Revoked on every worker: a few tries land on both.
        for _ in range(4):
            status, error = refusal(lambda: server.watch(session_id, token))
            assert (status, error["code"]) == (403, "invalid_token"), error
        status, error = refusal(lambda: server.watch(session_id, "not-a-token"))
        assert (status, error["code"]) == (403, "invalid_token")
        # A new link works; the session never noticed.
        with server.watch(session_id, server.share(session_id)["watchToken"]) as again:
            assert again.read_stdout_until("up\n") == "up\n"
        controller.send({"type": "kill"})
        assert controller.read_to_end().final["reason"] == "killed"


def test_one_watcher_past_max_watchers_is_refused(make_server):
    server = make_server(workers=2, max_watchers=2)
    session_id = server.create(SLEEPER)
    with server.attach(session_id) as controller:
        controller.read_stdout_until("up\n")
        token = server.share(session_id)["watchToken"]
        with server.watch(session_id, token, "now") as one, server.watch(session_id, token, "now") as two:
            for watcher in (one, two):
                watcher.read_until(lambda m: m == {"type": "watchers", "count": 2})
            status, error = refusal(lambda: server.watch(session_id, token))
            assert (status, error["code"]) == (429, "too_many_watchers"), error
        controller.send({"type": "kill"})
        assert controller.read_to_end().final["reason"] == "killed"


def controller_seconds(server: Server, slow_watcher: bool) -> tuple[float, Attachment | None, Transcript]:
    """How long the controller takes to read the flood to its end, with a watcher that reads
    nothing attached from the start or without one."""
    session_id = server.create(FLOOD)
    token = server.share(session_id)["watchToken"]
    started = time.monotonic()
    controller = server.attach(session_id)
    controller.read_until(lambda m: m["type"] == "state")
    watcher = None
    if slow_watcher:
        # A client that does not read: its library stops reading once one message waits, and
        # its socket's receive buffer is small and fixed (no autotuning, which would let the
        # kernel hold megabytes); then the server's sends to it block.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.connect(("127.0.0.1", urlsplit(server.url).port))
        watcher = server.watch(session_id, token, sock=sock, max_queue=1)
    transcript = controller.read_to_end(120)
    seconds = time.monotonic() - started
    controller.ws.close()
    return seconds, watcher, transcript


def test_a_watcher_that_does_not_read_does_not_slow_the_controller(make_server):
    server = make_server(workers=1, output_limit="64m", replay_buffer="256k")
    alone, _, transcript = controller_seconds(server, slow_watcher=False)
    watched, watcher, watched_transcript = controller_seconds(server, slow_watcher=True)
    assert transcript.final["reason"] == watched_transcript.final["reason"] == "exited"
    assert len(watched_transcript.text()) == FLOOD_LINES * 1009
    print(f"controller alone {alone:.2f} s, with a watcher that does not read {watched:.2f} s")
    # Generous: the machine is shared and noisy; a watcher that held the controller back would
    # hold it until the watcher read, which it never does.
    assert watched < 3 * alone + 2, (alone, watched)
    assert watcher is not None
    # Once it reads, it catches up: a gap for what its queue and the buffer no longer held, then
    # the rest to the final state.
    rest = watcher.read_to_end(60)
    assert watcher.gaps and rest.final["reason"] == "exited"
    assert rest.text().endswith(f"{FLOOD_LINES - 1:07d} " + "x" * 1000 + "\n")
    watcher.ws.close()
