"""Sessions end to end: the real server (gunicorn, gevent, 2 workers) on the real Docker daemon."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import requests
from harness import INTERACTIVE
from websockets.exceptions import ConnectionClosed, InvalidStatus

# Every test here runs a real server on the real Docker daemon.
pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_hello_world(server):
    transcript = server.run('print("Hello, world!")')
    assert transcript.messages[0][1] == {"type": "state", "state": "RUNNING"}
    assert transcript.text() == "Hello, world!\n"
    assert transcript.ending == {
        "type": "state",
        "state": "FINISHED",
        "exitCode": 0,
        "reason": "exited",
        "signal": None,
    }


def test_interactive_prompt_before_input_and_live_numbers(server):
    session_id = server.create(INTERACTIVE)
    assert server.session(session_id)["state"] == "CREATED"
    with server.attach(session_id) as ws:
        # The prompt has no newline; it must arrive while the program waits, before any input.
        seen = ws.read_stdout_until("Enter your name: ", timeout=10)
        assert seen == "Program started\nEnter your name: "
        assert server.session(session_id)["state"] == "RUNNING"
        ws.send({"type": "input", "data": "Ada\n"})
        ws.read_stdout_until("Hello Ada\n", timeout=10)
        arrivals = []
        for i in range(5):
            ws.read_stdout_until(f"{i}\n", timeout=5)
            arrivals.append(ws.messages[-1][0])
        transcript = ws.read_to_end()
    # Live, one by one: each number about a second after the one before, not all at exit.
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert all(0.6 < gap < 1.6 for gap in gaps), gaps
    assert transcript.text() == "Program started\nEnter your name: Hello Ada\n0\n1\n2\n3\n4\n"
    assert transcript.final["state"] == "FINISHED" and transcript.final["exitCode"] == 0
    info = server.session(session_id)
    assert info["state"] == "FINISHED" and info["exitCode"] == 0 and info["reason"] == "exited"
    assert info["createdAt"] <= info["startedAt"] <= info["endedAt"]


def test_stderr_apart_from_stdout(server):
    transcript = server.run('import sys\nprint("out")\nprint("err", file=sys.stderr)\nprint("out2")')
    assert transcript.text("stdout") == "out\nout2\n"
    assert transcript.text("stderr") == "err\n"


def test_non_zero_exit_code(server):
    transcript = server.run("import sys\nsys.exit(3)")
    assert transcript.ending == {
        "type": "state",
        "state": "FINISHED",
        "exitCode": 3,
        "reason": "exited",
        "signal": None,
    }


def test_uncaught_exception_is_stderr_and_exit_1(server):
    transcript = server.run("raise ValueError('boom')")
    assert "ValueError: boom" in transcript.text("stderr")
    assert transcript.final["exitCode"] == 1


def test_eof_closes_stdin(server):
    code = "import sys\ndata = sys.stdin.read()\nprint(len(data), repr(data))"
    with server.attach(server.create(code)) as ws:
        ws.read_until(lambda m: m["type"] == "state")
        ws.send({"type": "input", "data": "one\n"})
        ws.send({"type": "input", "data": "two"})
        ws.send({"type": "eof"})
        transcript = ws.read_to_end(10)
    assert transcript.text() == "7 'one\\ntwo'\n"
    assert transcript.final["reason"] == "exited"


def test_input_eof_raises_eoferror(server):
    code = "try:\n    input('> ')\nexcept EOFError:\n    print('got EOF')"
    with server.attach(server.create(code)) as ws:
        ws.read_stdout_until("> ")
        ws.send({"type": "eof"})
        assert ws.read_to_end(10).text() == "> got EOF\n"


def test_multibyte_characters_split_across_writes_arrive_whole(server):
    # Each character's bytes are written in two flushes with a pause between them.
    code = (
        "import sys, time\n"
        "for ch in '€ü日😀':\n"
        "    b = ch.encode()\n"
        "    sys.stdout.buffer.write(b[:1]); sys.stdout.buffer.flush(); time.sleep(0.05)\n"
        "    sys.stdout.buffer.write(b[1:]); sys.stdout.buffer.flush()\n"
    )
    transcript = server.run(code)
    chunks = [m["data"] for _, m in transcript.messages if m["type"] == "stdout"]
    assert "".join(chunks) == "€ü日😀"
    assert all("\ufffd" not in chunk for chunk in chunks)


def test_large_output_arrives_whole_and_in_order(server):
    # 90,000 bytes in one write: frames must not be cut (simple-websocket's send under gevent).
    code = "import sys\nsys.stdout.write(''.join(f'{i:05d}\\n' for i in range(15000)))"
    transcript = server.run(code)
    assert transcript.text() == "".join(f"{i:05d}\n" for i in range(15000))
    assert transcript.final["reason"] == "exited"


def test_kill_message_ends_session(server):
    session_id = server.create("import time\nprint('up')\ntime.sleep(60)")
    with server.attach(session_id) as ws:
        ws.read_stdout_until("up")
        ws.send({"type": "kill"})
        transcript = ws.read_to_end(10)
    assert transcript.final["state"] == "TERMINATED" and transcript.final["reason"] == "killed"
    assert server.session(session_id)["reason"] == "killed"


def test_unusable_client_message_gets_error_and_session_carries_on(server):
    with server.attach(server.create("print('echo:', input())")) as ws:
        ws.read_until(lambda m: m["type"] == "state")
        ws.ws.send("not json")
        assert ws.read_until(lambda m: m["type"] == "error")["message"].startswith("not valid JSON")
        ws.send({"type": "launch-missiles"})
        assert "unknown message type" in ws.read_until(lambda m: m["type"] == "error")["message"]
        ws.send({"type": "input", "data": 42})
        assert ws.read_until(lambda m: m["type"] == "error")
        ws.send({"type": "input", "data": "still here\n"})
        assert ws.read_to_end(10).text() == "echo: still here\n"


# Messages no server can use (issue 9.5), each with what its error says; none may end the handler.
HOSTILE = [
    ("[" * 200_000, "nested too deeply"),
    ('{"type": "input", "data": ' + '{"a":' * 100_000, "nested too deeply"),
    ('{"type": "resize", "cols": ' + "9" * 5000 + ', "rows": 24}', "5000 digits"),
    ('{"type": "resize", "cols": 1e999, "rows": 24}', "'cols' must be a whole number"),
    ('{"type": "resize", "cols": 80, "rows": NaN}', "NaN is not a JSON number"),
    ('{"type": "resize", "cols": true, "rows": 24}', "'cols' must be a whole number"),
    ('{"type": "signal", "signal": ["SIGINT"]}', "unknown signal an array"),
    ('{"type": "signal", "signal": "' + "A" * 500_000 + '"}', "unknown signal 'AAAA"),
    ('{"type": "' + "x" * 500_000 + '"}', "unknown message type 'xxxx"),
    ('{"type": "input", "data": "\\ud800"}', "lone surrogate"),
]


def test_hostile_client_messages_get_short_errors_and_the_program_runs_on(server):
    with server.attach(server.create("print('echo:', input())")) as ws:
        ws.read_until(lambda m: m["type"] == "state")
        for raw, says in HOSTILE:
            ws.ws.send(raw)
            message = ws.read_until(lambda m: m["type"] != "stdout")
            assert message["type"] == "error", message
            assert says in message["message"] and len(message["message"]) < 200
        ws.send({"type": "input", "data": "still here\n"})
        transcript = ws.read_to_end(10)
    assert transcript.text() == "echo: still here\n"
    assert transcript.ending == {
        "type": "state",
        "state": "FINISHED",
        "exitCode": 0,
        "reason": "exited",
        "signal": None,
    }


def test_delete_ends_a_running_session(server):
    session_id = server.create("import time\nprint('up')\ntime.sleep(60)")
    with server.attach(session_id) as ws:
        ws.read_stdout_until("up")
        assert requests.delete(f"{server.url}/session/{session_id}", timeout=10).status_code == 204
        transcript = ws.read_to_end(10)
    assert transcript.final["reason"] == "killed"


def test_delete_of_unattached_session(server):
    session_id = server.create("print('never')")
    assert requests.delete(f"{server.url}/session/{session_id}", timeout=10).status_code == 204
    info = server.session(session_id)
    assert info["state"] == "TERMINATED" and info["reason"] == "killed"
    assert not server.session_containers(session_id)


def test_second_attachment_is_refused_and_first_unharmed(server):
    session_id = server.create("print('echo:', input())")
    with server.attach(session_id) as first:
        first.read_until(lambda m: m["type"] == "state")
        with pytest.raises(InvalidStatus) as refused:
            server.attach(session_id)
        assert refused.value.response.status_code == 409
        assert json.loads(refused.value.response.body)["error"]["code"] == "already_attached"
        first.send({"type": "input", "data": "fine\n"})
        assert first.read_to_end(10).text() == "echo: fine\n"


def test_attach_to_unknown_session_is_404_before_upgrade(server):
    with pytest.raises(InvalidStatus) as refused:
        server.attach(str(uuid.uuid4()))
    assert refused.value.response.status_code == 404
    assert json.loads(refused.value.response.body)["error"]["code"] == "not_found"


def test_attach_to_ended_session_is_refused(server):
    session_id = server.create("print(1)")
    with server.attach(session_id) as ws:
        ws.read_to_end(10)
    with pytest.raises(InvalidStatus) as refused:
        server.attach(session_id)
    assert refused.value.response.status_code == 410


def test_foreign_origin_is_refused_before_upgrade(server):
    session_id = server.create("print(1)")
    with pytest.raises(InvalidStatus) as refused:
        server.attach(session_id, origin="https://evil.example")
    assert refused.value.response.status_code == 403
    # Same-origin browsers are welcome, and the session was not consumed by the refusal.
    host = server.ws_url.split("//", 1)[1]  # the host the WebSocket connects to
    with server.attach(session_id, origin=f"http://{host}") as ws:
        assert ws.read_to_end(10).final["reason"] == "exited"


def test_unattached_session_expires_after_idle_timeout(server):
    session_id = server.create("print('never')")
    # idle_timeout is 3 s on this server; the reapers look every second.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        info = server.session(session_id)
        if info["state"] == "TERMINATED":
            break
        time.sleep(0.2)
    assert info["state"] == "TERMINATED" and info["reason"] == "idle_timeout"
    assert not server.session_containers(session_id)


def test_websocket_closes_normally_after_final_state(server):
    with server.attach(server.create("print(1)")) as ws:
        ws.read_to_end(10)
        with pytest.raises(ConnectionClosed) as closed:
            ws.ws.recv(5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000


def test_a_crash_is_named_by_its_signal(server):
    transcript = server.run("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)")
    assert transcript.final["signal"] == "SIGSEGV" and transcript.final["exitCode"] == 139


@pytest.mark.parametrize("attempt", range(5))
def test_delete_of_an_attached_running_session_always_ends_the_same(server, attempt):
    # Issue 10: exitCode 137 in some runs and null in others, sometimes an extra "\n" first.
    session_id = server.create("import time\nprint('up', flush=True)\ntime.sleep(60)")
    with server.attach(session_id) as ws:
        ws.read_stdout_until("up")
        assert requests.delete(f"{server.url}/session/{session_id}", timeout=30).status_code == 204
        transcript = ws.read_to_end(30)
    assert transcript.text() == "up\n"
    assert transcript.ending == {
        "type": "state",
        "state": "TERMINATED",
        "exitCode": 137,
        "reason": "killed",
        "signal": "SIGKILL",
    }
    info = server.session(session_id)
    assert (info["exitCode"], info["reason"], info["signal"]) == (137, "killed", "SIGKILL")


def test_merged_stderr_keeps_the_order_the_program_wrote_in(server):
    code = "import sys\nfor i in range(50):\n    print('out', i)\n    print('err', i, file=sys.stderr)\n"
    response = server.post(code, mergeStderr=True)
    assert response.status_code == 201, response.text
    with server.attach(response.json()["sessionId"]) as ws:
        transcript = ws.read_to_end(30)
    expected = "".join(f"out {i}\nerr {i}\n" for i in range(50))
    assert transcript.text() == expected and transcript.text("stderr") == ""
