"""Sessions that survive the network: a TCP proxy between client and server is cut mid-run, and
the client resumes from the last seq it received."""

from __future__ import annotations

import time

import pytest
from harness import Attachment, Server, Transcript
from websockets.exceptions import ConnectionClosed, InvalidStatus

LINES = 60
# Numbered lines over about three seconds: a cut lands mid-run.
COUNTER = (
    f"import time\nfor i in range({LINES}):\n    print(f'line {{i}}', flush=True)\n    time.sleep(0.05)\n"
)
EXPECTED = "".join(f"line {i}\n" for i in range(LINES))
SLEEPER = "import time\nprint('up', flush=True)\nwhile True:\n    time.sleep(0.05)\n"


def drained(ws: Attachment) -> None:
    """Read what reached the client before its connection was cut, until the cut shows."""
    with pytest.raises(ConnectionClosed):
        while True:
            ws.recv(10)


def resumed(server: Server, session_id: str, after: int, base: str = "") -> Attachment:
    """A resume as soon as the server has noticed the cut: until then the dropped client still
    counts as attached (409), as a client on a dead network does until a send to it fails."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return server.attach(session_id, resume=after, base=base)
        except InvalidStatus as refused:
            if refused.response.status_code != 409 or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def wait_final(server: Server, session_id: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while (info := server.session(session_id))["state"] not in ("FINISHED", "TERMINATED"):
        assert time.monotonic() < deadline, info
        time.sleep(0.1)
    return info


def test_a_cut_mid_run_then_resume_delivers_every_byte_once_in_order(make_server, proxy_to):
    server = make_server(workers=1, reconnect_grace=20)
    proxy = proxy_to(server)
    session_id = server.create(COUNTER)
    first = server.attach(session_id, base=proxy.ws_base)
    first.read_stdout_until("line 10\n")
    proxy.cut()
    drained(first)
    with resumed(server, session_id, first.last_seq) as second:
        transcript = second.read_to_end()
    assert Transcript(first.messages).text() + transcript.text() == EXPECTED
    assert second.seqs[0] == first.seqs[-1] + 1 and not second.gaps
    assert transcript.ending == {
        "type": "state",
        "state": "FINISHED",
        "exitCode": 0,
        "reason": "exited",
        "signal": None,
    }


def test_a_session_that_ends_while_detached_replays_to_its_final_state(make_server, proxy_to):
    server = make_server(workers=1, reconnect_grace=20)
    proxy = proxy_to(server)
    session_id = server.create(COUNTER)
    first = server.attach(session_id, base=proxy.ws_base)
    first.read_stdout_until("line 1\n")
    proxy.cut()
    drained(first)
    assert wait_final(server, session_id)["reason"] == "exited"
    with resumed(server, session_id, first.last_seq) as second:
        transcript = second.read_to_end()
    assert Transcript(first.messages).text() + transcript.text() == EXPECTED
    assert not second.gaps and transcript.final["reason"] == "exited"


def test_a_gap_is_reported_exactly_when_the_buffer_overflowed(make_server, proxy_to):
    server = make_server(workers=1, reconnect_grace=20, replay_buffer=2000)
    proxy = proxy_to(server)
    session_id = server.create(COUNTER)
    first = server.attach(session_id, base=proxy.ws_base)
    first.read_stdout_until("line 1\n")
    proxy.cut()
    drained(first)
    wait_final(server, session_id)
    with resumed(server, session_id, first.last_seq) as second:
        transcript = second.read_to_end()
    # Lost: the seqs right after the client's last, up to the first the buffer still held.
    [gap] = second.gaps
    assert gap["from"] == first.last_seq + 1 and second.seqs[0] == gap["to"] + 1
    held = transcript.text()
    assert (
        held
        and EXPECTED.endswith(held)
        and len(held) < len(EXPECTED) - len(Transcript(first.messages).text())
    )
    assert transcript.final["reason"] == "exited"


def test_no_resume_within_the_grace_ends_the_session_client_disconnected(make_server, proxy_to):
    server = make_server(workers=1, reconnect_grace=1)
    proxy = proxy_to(server)
    session_id = server.create(SLEEPER)
    first = server.attach(session_id, base=proxy.ws_base)
    first.read_stdout_until("up")
    proxy.cut()
    cut_at = time.monotonic()
    assert wait_final(server, session_id)["reason"] == "client_disconnected"
    assert time.monotonic() - cut_at >= 1


def test_takeover_closes_the_first_client_with_its_own_code(make_server):
    server = make_server(workers=1, reconnect_grace=20)
    session_id = server.create(SLEEPER)
    first = server.attach(session_id)
    first.read_stdout_until("up")
    with pytest.raises(InvalidStatus) as refused:
        server.attach(session_id, resume=0)
    assert refused.value.response.status_code == 409
    with server.attach(session_id, resume=0, takeover=True) as second:
        assert second.read_stdout_until("up\n") == "up\n"
        with pytest.raises(ConnectionClosed) as closed:
            first.read_to_end(10)
        assert closed.value.rcvd.code == 4408 and "took this session over" in closed.value.rcvd.reason
        second.send({"type": "kill"})
        assert second.read_to_end().final["reason"] == "killed"


def test_resumes_landing_on_either_worker_see_every_byte_once(make_server, proxy_to):
    server = make_server(workers=2, reconnect_grace=20)
    proxy = proxy_to(server)
    session_id = server.create(COUNTER)
    attachments = [server.attach(session_id, base=proxy.ws_base)]
    # Each reconnect lands on whichever worker accepts it: over five, both all but surely.
    for n in range(5):
        attachments[-1].read_stdout_until(f"line {8 * (n + 1)}\n")
        proxy.cut()
        drained(attachments[-1])
        attachments.append(resumed(server, session_id, attachments[-1].last_seq, proxy.ws_base))
    transcript = attachments[-1].read_to_end()
    assert "".join(Transcript(a.messages).text() for a in attachments) == EXPECTED
    assert [s for a in attachments for s in a.seqs] == list(range(1, attachments[-1].last_seq + 1))
    assert transcript.final["reason"] == "exited"
