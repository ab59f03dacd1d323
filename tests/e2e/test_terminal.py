"""Terminal sessions and signals, through the real server on the real daemon."""

from __future__ import annotations

import json

import pytest
import requests
from harness import SLEEP_UNTIL_SIGNAL

# Every test here runs a real server on the real Docker daemon.
pytestmark = [pytest.mark.docker, pytest.mark.slow]

INTERRUPTIBLE = f"""\
import time

try:
    print('waiting', flush=True)
    {SLEEP_UNTIL_SIGNAL}
except KeyboardInterrupt:
    print('interrupted')
"""


def tty_session(server, code: str, cols: int = 80, rows: int = 24):
    response = server.post(code, tty=True, cols=cols, rows=rows)
    assert response.status_code == 201, response.text
    return server.attach(response.json()["sessionId"])


def test_tty_program_sees_a_terminal_of_the_given_size_from_its_first_instruction(server):
    code = "import os, sys\nprint(sys.stdin.isatty(), sys.stdout.isatty(), tuple(os.get_terminal_size()))"
    with tty_session(server, code, cols=100, rows=30) as ws:
        transcript = ws.read_to_end(20)
    assert transcript.text() == "True True (100, 30)\r\n"
    assert transcript.text("stderr") == ""  # a tty has one stream: everything is stdout
    assert transcript.final["reason"] == "exited"


def test_tty_default_size_is_80_by_24(server):
    with tty_session(server, "import os\nprint(tuple(os.get_terminal_size()))") as ws:
        assert ws.read_to_end(20).text() == "(80, 24)\r\n"


def test_tty_input_is_echoed_and_colours_pass_through(server):
    code = "name = input('Name: ')\nprint(f'\\x1b[1;31mHello {name}\\x1b[0m')"
    with tty_session(server, code) as ws:
        ws.read_stdout_until("Name: ")
        ws.send({"type": "input", "data": "Ada\r"})
        transcript = ws.read_to_end(20)
    assert transcript.text() == "Name: Ada\r\n\x1b[1;31mHello Ada\x1b[0m\r\n"


def test_resize_reaches_the_program_with_sigwinch(server):
    code = (
        "import os, signal, sys\n"
        "def winch(*_):\n"
        "    print('winch', tuple(os.get_terminal_size()), flush=True)\n"
        "signal.signal(signal.SIGWINCH, winch)\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    with tty_session(server, code) as ws:
        ws.read_stdout_until("ready")
        ws.send({"type": "resize", "cols": 132, "rows": 43})
        ws.read_stdout_until("winch (132, 43)")
        ws.send({"type": "input", "data": "\r"})
        assert ws.read_to_end(20).final["exitCode"] == 0


def test_sigint_in_tty_mode_is_keyboard_interrupt(server):
    code = INTERRUPTIBLE
    with tty_session(server, code) as ws:
        ws.read_stdout_until("waiting")
        ws.send({"type": "signal", "signal": "SIGINT"})
        transcript = ws.read_to_end(20)
    assert transcript.text().endswith("interrupted\r\n")
    assert transcript.final["reason"] == "exited" and transcript.final["exitCode"] == 0


def test_ctrl_c_typed_in_tty_mode_is_sigint(server):
    code = INTERRUPTIBLE
    with tty_session(server, code) as ws:
        ws.read_stdout_until("waiting")
        ws.send({"type": "input", "data": "\x03"})
        assert ws.read_to_end(20).text().endswith("interrupted\r\n")


def test_sigint_in_pipe_mode_reaches_the_whole_process_group(server):
    code = (
        "import subprocess, time\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        "try:\n"
        "    print('waiting', flush=True)\n"
        f"    {SLEEP_UNTIL_SIGNAL}\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted; child ended by', -child.wait())\n"
    )
    with server.attach(server.create(code)) as ws:
        ws.read_stdout_until("waiting")
        ws.send({"type": "signal", "signal": "SIGINT"})
        transcript = ws.read_to_end(20)
    assert transcript.text() == "waiting\ninterrupted; child ended by 2\n"


def test_unhandled_sigterm_ends_the_program_with_128_plus_n(server):
    with server.attach(server.create("import time\nprint('up', flush=True)\ntime.sleep(60)")) as ws:
        ws.read_stdout_until("up")
        ws.send({"type": "signal", "signal": "SIGTERM"})
        final = ws.read_to_end(20).ending
    assert final == {
        "type": "state",
        "state": "FINISHED",
        "exitCode": 143,
        "reason": "exited",
        "signal": "SIGTERM",
    }


def test_eof_in_tty_mode(server):
    code = "try:\n    input('> ')\nexcept EOFError:\n    print('got EOF')"
    with tty_session(server, code) as ws:
        ws.read_stdout_until("> ")
        ws.send({"type": "eof"})
        assert ws.read_to_end(20).text().endswith("got EOF\r\n")


def test_bad_resize_and_signal_messages_get_errors_and_the_session_carries_on(server):
    with tty_session(server, "print('echo', input())") as ws:
        ws.read_until(lambda m: m["type"] == "state")
        for bad in (
            {"type": "resize", "cols": 0, "rows": 24},
            {"type": "resize", "cols": 80, "rows": 99999},
            {"type": "resize", "cols": "wide", "rows": 24},
            {"type": "signal", "signal": "SIGSEGV"},
            {"type": "signal"},
        ):
            ws.send(bad)
            assert ws.read_until(lambda m: m["type"] == "error")["message"]
        ws.send({"type": "input", "data": "fine\r"})
        assert ws.read_to_end(20).text().endswith("echo fine\r\n")


def test_a_size_in_whole_floats_is_taken_and_a_hostile_one_answered(server):
    code = (
        "import os, signal, sys\n"
        "def winch(*_):\n"
        "    print('winch', tuple(os.get_terminal_size()), flush=True)\n"
        "signal.signal(signal.SIGWINCH, winch)\n"
        "print('ready', tuple(os.get_terminal_size()), flush=True)\n"
        "sys.stdin.readline()\n"
    )
    response = server.post(code, tty=True, cols=100.0, rows=3e1)
    assert response.status_code == 201, response.text
    with server.attach(response.json()["sessionId"]) as ws:
        ws.read_stdout_until("ready (100, 30)")
        for raw in ('{"type": "resize", "cols": ' + "9" * 5000 + ', "rows": 24}', "[" * 200_000):
            ws.ws.send(raw)
            assert ws.read_until(lambda m: m["type"] != "stdout")["type"] == "error"
        ws.ws.send('{"type": "resize", "cols": 132.0, "rows": 4.3e1}')
        ws.read_stdout_until("winch (132, 43)")
        ws.send({"type": "input", "data": "\r"})
        assert ws.read_to_end(20).final["reason"] == "exited"


def test_resize_in_pipe_mode_is_an_error(server):
    with server.attach(server.create("print('echo', input())")) as ws:
        ws.read_until(lambda m: m["type"] == "state")
        ws.send({"type": "resize", "cols": 100, "rows": 30})
        assert "tty" in ws.read_until(lambda m: m["type"] == "error")["message"]
        ws.send({"type": "input", "data": "fine\n"})
        assert ws.read_to_end(20).text() == "echo fine\n"


def test_tty_request_validation(server):
    for body in (
        {"tty": "yes"},
        {"tty": True, "cols": 0},
        {"tty": True, "rows": 100000},
        {"tty": True, "cols": "80"},
        {"cols": 80},
    ):
        response = requests.post(
            f"{server.url}/session", json={"language": "python", "code": "print(1)", **body}, timeout=10
        )
        assert response.status_code == 400, body
        assert json.loads(response.text)["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    ("language", "code", "expected"),
    [
        ("python", "print(repr(input('> ')))", "'a\\x1ab'"),
        ("bash", "read -r -p '> ' line; printf '%q\\n' \"$line\"", "$'a\\032b'"),
    ],
)
def test_ctrl_z_in_a_terminal_is_a_plain_character_not_a_suspension(server, language, code, expected):
    # Issue 10: Ctrl-Z stopped the program with no way back, then the idle timeout killed it.
    response = server.post(code, language=language, tty=True)
    with server.attach(response.json()["sessionId"]) as ws:
        ws.read_stdout_until("> ")
        ws.send({"type": "input", "data": "a\x1ab\r"})
        transcript = ws.read_to_end(20)
    assert expected in transcript.text()
    assert transcript.final["reason"] == "exited" and transcript.final["exitCode"] == 0
