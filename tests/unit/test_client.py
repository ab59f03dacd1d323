"""`sandbox-engine run` against servers over real HTTP: the language from GET /languages, the
server's URL, the session it asks for, and how it says the way a program ended.

The servers are the app over a fake executor, or scripted ones that answer as a server of another
version might; the end-to-end suite (tests/e2e/test_cli.py) runs the CLI against the real one."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from fakes import FakeExecutor
from flask import Flask, request
from flask_sock import Sock
from werkzeug.serving import make_server

from sandbox_engine import create_app
from sandbox_engine.client import (
    DEFAULT_SERVER,
    KEY_VARIABLE,
    SIGNALS,
    ClientError,
    Console,
    auth_headers,
    ending,
    exit_code,
    language_of,
    server_url,
)
from sandbox_engine.config import Config
from sandbox_engine.keys import KeyStore

CLI = os.path.join(os.path.dirname(sys.executable), "sandbox-engine")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app: Flask) -> Iterator[str]:
    """The app on a free local port, in a thread, for as long as the block runs; its URL."""
    http = make_server("127.0.0.1", 0, app, threaded=True)
    # A short poll: shutdown() waits for the serving loop to look.
    thread = threading.Thread(target=http.serve_forever, args=(0.02,), name="http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_port}"
    finally:
        http.shutdown()
        thread.join()
        http.server_close()


@pytest.fixture
def server(tmp_path, executor: FakeExecutor) -> Iterator[str]:
    app = create_app(Config(state_dir=str(tmp_path / "state")), executor=executor)
    try:
        with serving(app) as url:
            yield url
    finally:
        app.extensions["sandbox_engine"].shutdown()


def other_server(body: dict, status: int = 200) -> Flask:
    """A server whose GET /languages answers this, as one of another version might."""
    app = Flask("other")
    app.get("/languages")(lambda: (body, status))
    return app


@pytest.mark.parametrize(
    ("path", "language"),
    [
        ("greet.py", "python"),
        ("src/Main.JAVA", "java"),
        ("app.mjs", "javascript"),
        ("prog.cc", "cpp"),
        ("run.bash", "bash"),
        ("dir.v2/main.hs", "haskell"),
    ],
)
def test_a_file_is_in_the_language_its_extension_names_on_the_server(server, path, language):
    assert language_of(server, path) == language


def test_an_extension_no_language_takes_asks_for_lang_and_names_those_known(server):
    with pytest.raises(ClientError) as error:
        language_of(server, "prog.cob")
    message = str(error.value)
    assert "no language of" in message and ".cob files" in message and message.endswith("give --lang")
    assert ".py" in message and ".hs" in message and "\n" not in message


def test_a_file_without_an_extension_asks_for_lang_without_asking_the_server():
    with pytest.raises(ClientError, match="without an extension; give --lang"):
        language_of(f"http://127.0.0.1:{free_port()}", "Makefile")


def test_an_unreachable_server_says_to_start_it():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ClientError) as error:
        language_of(url, "greet.py")
    assert str(error.value) == f"cannot reach the server at {url}: is it running? (make run)"


def test_a_server_that_does_not_list_extensions_asks_for_lang():
    with serving(other_server({"languages": [{"id": "python", "name": "Python", "version": "3.11"}]})) as url:
        with pytest.raises(ClientError, match=r"does not say which languages take \.py files; give --lang"):
            language_of(url, "greet.py")


def test_a_server_that_refuses_says_why():
    refusal = {"error": {"code": "runtime_unavailable", "message": "Docker does not answer"}}
    with serving(other_server(refusal, 503)) as url:
        with pytest.raises(
            ClientError, match="^the server did not list its languages: Docker does not answer; give --lang$"
        ):
            language_of(url, "greet.py")


@pytest.mark.parametrize(
    ("given", "environ", "url"),
    [
        (None, {}, "http://127.0.0.1:8080"),
        ("127.0.0.1:8080", {}, "http://127.0.0.1:8080"),
        ("localhost:8080", {}, "http://localhost:8080"),
        ("https://ide.example.org/sandbox/", {}, "https://ide.example.org/sandbox"),
        (None, {"SANDBOX_ENGINE_SERVER": "10.0.0.5:9000"}, "http://10.0.0.5:9000"),
        ("http://127.0.0.1:7000", {"SANDBOX_ENGINE_SERVER": "10.0.0.5:9000"}, "http://127.0.0.1:7000"),
        (None, {"SANDBOX_ENGINE_SERVER": ""}, "http://127.0.0.1:8080"),
    ],
)
def test_the_server_url_from_the_flag_the_variable_or_the_default(given, environ, url):
    assert DEFAULT_SERVER == "http://127.0.0.1:8080"
    assert server_url(given, environ) == url


@pytest.mark.parametrize(
    ("given", "says"),
    [
        (
            "ftp://127.0.0.1:8080",
            "ftp://127.0.0.1:8080 is not a server URL: give http://HOST:PORT or https://HOST",
        ),
        ("127.0.0.1:80x", "http://127.0.0.1:80x is not a server URL: the port is not a number"),
        ("http://", "http:// is not a server URL: give http://HOST:PORT or https://HOST"),
    ],
)
def test_a_server_url_that_cannot_be_one_says_what_is_wrong(given, says):
    with pytest.raises(ClientError) as error:
        server_url(given, {})
    assert str(error.value) == says


class ScriptedServer:
    """POST /session and the WebSocket of one session, answered from a script: what a server of
    any version, or one ending a program in any way, sends."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        # The Authorization header of each POST, None when it had none.
        self.keys: list[str | None] = []
        self.refusal: tuple[int, dict] | None = None
        self.messages: list[dict] = []
        self.app = Flask("scripted")
        self.app.post("/session")(self._post)
        Sock(self.app).route("/ws/session/<session_id>")(self._socket)

    def _post(self):
        self.bodies.append(request.get_json())
        self.keys.append(request.headers.get("Authorization"))
        if self.refusal is not None:
            return self.refusal
        return {"sessionId": "scripted"}, 201

    def _socket(self, ws, session_id):
        for message in self.messages:
            ws.send(json.dumps(message))
        # The client closes once it has the final state. Closing first would race with werkzeug,
        # which drains the socket before it closes it, while the client waits for that close.
        while ws.receive(timeout=10) is not None:
            pass


@pytest.fixture
def scripted() -> Iterator[tuple[ScriptedServer, str]]:
    server = ScriptedServer()
    with serving(server.app) as url:
        yield server, url


def run_cli(
    url: str, path: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """The command as a user runs it with stdin not a terminal (pipe mode)."""
    environ = {k: v for k, v in os.environ.items() if k != KEY_VARIABLE}
    return subprocess.run(
        [CLI, "run", "--server", url, "--lang", "python", *args, path],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        env={**environ, **(env or {})},
    )


def finished(state: str, reason: str, code: int | None, signal: str | None = None) -> dict:
    message = {"type": "state", "state": state, "exitCode": code, "reason": reason}
    if signal is not None:
        message["signal"] = signal
    return message


def test_merge_stderr_asks_the_server_for_one_pipe(scripted, tmp_path):
    server, url = scripted
    path = tmp_path / "both.py"
    path.write_text("print('hi')\n")
    server.messages = [{"type": "state", "state": "RUNNING"}, finished("FINISHED", "exited", 0)]
    assert run_cli(url, str(path)).returncode == 0
    assert run_cli(url, str(path), "--merge-stderr").returncode == 0
    code = "print('hi')\n"
    assert server.bodies == [
        {"language": "python", "code": code},
        {"language": "python", "code": code, "mergeStderr": True},
    ]


def test_the_key_goes_with_the_request_from_the_flag_else_the_variable(scripted, tmp_path):
    server, url = scripted
    path = tmp_path / "hi.py"
    path.write_text("print('hi')\n")
    server.messages = [finished("FINISHED", "exited", 0)]
    assert run_cli(url, str(path)).returncode == 0
    assert run_cli(url, str(path), "--key", "se_flag").returncode == 0
    assert run_cli(url, str(path), env={KEY_VARIABLE: "se_variable"}).returncode == 0
    assert run_cli(url, str(path), "--key", "se_flag", env={KEY_VARIABLE: "se_variable"}).returncode == 0
    assert server.keys == [None, "Bearer se_flag", "Bearer se_variable", "Bearer se_flag"]
    assert auth_headers(None, {}) == {} and auth_headers(" ", {KEY_VARIABLE: ""}) == {}


def test_a_server_that_needs_a_key_says_how_to_give_one(tmp_path, executor):
    config = Config(state_dir=str(tmp_path / "state"))
    secret = KeyStore.for_config(config).create("cli", max_sessions=1)
    app = create_app(config, executor=executor)
    path = tmp_path / "hi.py"
    path.write_text("print('hi')\n")
    try:
        with serving(app) as url:
            with pytest.raises(ClientError, match=f"give --key, or set {KEY_VARIABLE}"):
                language_of(url, "hi.py")
            with pytest.raises(ClientError, match="not valid"):
                language_of(url, "hi.py", auth_headers("se_wrong"))
            assert language_of(url, "hi.py", auth_headers(secret)) == "python"
            refused = run_cli(url, str(path))
            assert refused.returncode == 2 and refused.stdout == b""
            assert refused.stderr == (
                b"sandbox-engine: the server refused: this server needs an API key: send Authorization: "
                b"Bearer <key> (give --key, or set SANDBOX_ENGINE_KEY)\n"
            )
    finally:
        app.extensions["sandbox_engine"].shutdown()


def test_a_server_that_refuses_merge_stderr_says_so_in_one_line(scripted, tmp_path):
    # What a server from before mergeStderr answers, should it refuse fields it does not know.
    server, url = scripted
    server.refusal = ({"error": {"code": "invalid_request", "message": "unknown field 'mergeStderr'"}}, 400)
    path = tmp_path / "both.py"
    path.write_text("print('hi')\n")
    result = run_cli(url, str(path), "--merge-stderr")
    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr == b"sandbox-engine: the server refused: unknown field 'mergeStderr'\n"


@pytest.mark.parametrize(
    ("final", "stderr", "code"),
    [
        (finished("FINISHED", "exited", 0), b"", 0),
        (finished("FINISHED", "exited", 3), b"", 3),
        (finished("FINISHED", "exited", 0, None) | {"signal": None}, b"", 0),
        (
            finished("FINISHED", "exited", 139, "SIGSEGV"),
            b"sandbox-engine: killed by SIGSEGV (segmentation fault)\n",
            139,
        ),
        (
            finished("FINISHED", "exited", 134, "SIGABRT"),
            b"sandbox-engine: killed by SIGABRT (aborted)\n",
            134,
        ),
        (finished("FINISHED", "exited", 138, "SIGUSR1"), b"sandbox-engine: killed by SIGUSR1\n", 138),
        (finished("FINISHED", "compile_error", 1), b"sandbox-engine: compilation failed\n", 1),
        (
            finished("TERMINATED", "idle_timeout", 137, "SIGKILL"),
            b"sandbox-engine: the session was ended because no input and no output for too long\n",
            137,
        ),
        (
            finished("TERMINATED", "input_timeout", 137, "SIGKILL"),
            b"sandbox-engine: the session was ended because no input for too long"
            b" while waiting at a prompt\n",
            137,
        ),
        (
            finished("TERMINATED", "memory_limit", 137),
            b"sandbox-engine: the session was ended because the memory limit was exceeded\n",
            137,
        ),
        (
            finished("TERMINATED", "killed", None),
            b"sandbox-engine: the session was ended because it was stopped\n",
            1,
        ),
        (
            finished("TERMINATED", "some_new_reason", None),
            b"sandbox-engine: the session was ended because some new reason\n",
            1,
        ),
    ],
    ids=lambda value: value.get("signal") or value["reason"] if isinstance(value, dict) else None,
)
def test_how_a_program_ended_in_words_and_in_the_exit_code(scripted, tmp_path, final, stderr, code):
    server, url = scripted
    path = tmp_path / "prog.py"
    path.write_text("pass\n")
    server.messages = [{"type": "state", "state": "RUNNING"}, {"type": "stdout", "data": "out\n"}, final]
    result = run_cli(url, str(path))
    # In pipe mode every line ends with \n alone: only a terminal in raw mode needs \r\n.
    assert (result.stdout, result.stderr, result.returncode) == (b"out\n", stderr, code)


def test_the_end_in_words_starts_a_line_of_its_own(scripted, tmp_path):
    server, url = scripted
    path = tmp_path / "prog.py"
    path.write_text("pass\n")
    server.messages = [
        {"type": "state", "state": "RUNNING"},
        {"type": "stdout", "data": "Enter your name: "},
        finished("TERMINATED", "input_timeout", 137, "SIGKILL"),
    ]
    result = run_cli(url, str(path))
    assert result.stdout == b"Enter your name: "
    assert result.stderr == (
        b"\nsandbox-engine: the session was ended because no input for too long while waiting at a prompt\n"
    )


def test_lines_of_our_own_end_as_the_terminal_needs():
    for raw, newline in ((False, b"\n"), (True, b"\r\n")):
        out, err = io.BytesIO(), io.BytesIO()
        console = Console(raw, out, err)
        console.say("first")
        console.write("stdout", "Enter your name: ")
        console.say("second")
        assert out.getvalue() == b"Enter your name: "
        assert (
            err.getvalue()
            == b"sandbox-engine: first" + newline + newline + b"sandbox-engine: second" + newline
        )


def test_escape_sequences_after_the_last_line_do_not_open_another():
    # How Mono's console ends a program on a terminal: its last line, then modes and colours reset.
    out, err = io.BytesIO(), io.BytesIO()
    console = Console(True, out, err)
    console.write("stdout", "Hello Ada\r\n")
    console.write("stdout", "\x1b[?1l\x1b>\x1b]104\x07")
    console.say("killed by SIGTERM (terminated)")
    assert err.getvalue() == b"sandbox-engine: killed by SIGTERM (terminated)\r\n"
    console.write("stdout", "Enter your name: \x1b[0m")
    console.say("again")
    assert err.getvalue().endswith(b"\r\n\r\nsandbox-engine: again\r\n")


def test_every_signal_the_issue_names_has_words():
    named = "SIGSEGV SIGABRT SIGFPE SIGKILL SIGILL SIGBUS SIGTERM SIGINT SIGPIPE SIGXCPU"
    assert set(SIGNALS) == set(named.split())
    assert ending(finished("FINISHED", "exited", 136, "SIGFPE")) == "killed by SIGFPE (arithmetic error)"
    assert ending(finished("FINISHED", "exited", 152, "SIGXCPU")) == "killed by SIGXCPU (CPU time limit)"
    assert exit_code(finished("TERMINATED", "timeout", 0)) == 1
