"""Piston's /api/v2/connect as its clients see it: the handler, over a fake WebSocket and a fake
executor, from the init to the close code."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator

import pytest
from fakes import STALL, FakeExecutor, FakeSandbox
from flask import Flask, g
from simple_websocket import ConnectionClosed

from sandbox_engine import create_app, piston_ws
from sandbox_engine.config import Config
from sandbox_engine.executor import RuntimeUnavailable
from sandbox_engine.keys import DEFAULT_SCOPES, Key
from sandbox_engine.worker import EXTENSION

_CLOSED = object()
PROGRAM = 'name = input("Name: ")\nprint("Hello", name)\n'


class FakeWebSocket:
    """simple-websocket's Server as the handler uses it; the test is the client."""

    def __init__(self) -> None:
        self._inbox: queue.Queue = queue.Queue()
        self._sent = threading.Condition()
        self.sent: list[dict] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.connected = True
        self.event = threading.Event()
        self.sock = None

    # --- the client's side ----------------------------------------------------------------
    def client_sends(self, message: dict | str) -> None:
        self._inbox.put(message if isinstance(message, str) else json.dumps(message))

    def client_goes_away(self) -> None:
        self.connected = False
        self._inbox.put(_CLOSED)

    def wait_for(self, predicate, timeout: float = STALL) -> list[dict]:
        """Once predicate(sent) holds; it is looked at on each message and every 10 ms, for what
        changes without one (a signal reaching the sandbox)."""
        deadline = time.monotonic() + timeout
        with self._sent:
            while not predicate(self.sent):
                assert time.monotonic() < deadline, self.sent
                self._sent.wait(0.01)
            return list(self.sent)

    def wait_closed(self, timeout: float = STALL) -> tuple[int | None, str | None]:
        with self._sent:
            assert self._sent.wait_for(lambda: self.close_code is not None, timeout), self.sent
        return self.close_code, self.close_reason

    # --- the server's side ----------------------------------------------------------------
    def receive(self, timeout: float | None = None):
        if not self.connected:
            raise ConnectionClosed()
        try:
            item = self._inbox.get(timeout=STALL if timeout is None else timeout)
        except queue.Empty:
            if timeout is None:
                raise AssertionError("the handler waited for a message the test never sent") from None
            return None
        if item is _CLOSED:
            raise ConnectionClosed()
        return item

    def send(self, data: str) -> None:
        if not self.connected:
            raise ConnectionClosed()
        with self._sent:
            self.sent.append(json.loads(data))
            self._sent.notify_all()

    def close(self, reason: int | None = None, message: str | None = None) -> None:
        if not self.connected:
            raise ConnectionClosed()
        with self._sent:
            self.connected = False
            self.close_code, self.close_reason = reason, message
            self._sent.notify_all()
        self._inbox.put(_CLOSED)


@pytest.fixture
def app(tmp_path, executor: FakeExecutor) -> Iterator[Flask]:
    app = create_app(
        Config(state_dir=str(tmp_path / "state"), max_sessions=2, run_timeout=12), executor=executor
    )
    yield app
    app.extensions[EXTENSION].shutdown()


@pytest.fixture
def connect(app: Flask) -> Iterator:
    """Run the handler on a connection of its own, as gunicorn would; joined at the end."""
    threads: list[threading.Thread] = []

    def start(key: Key | None = None) -> FakeWebSocket:
        """A connection, made with `key` as auth's check leaves it for the handler."""
        ws = FakeWebSocket()

        def handle() -> None:
            with app.app_context():
                g.sandbox_key = key
                piston_ws.serve(ws)

        thread = threading.Thread(target=handle, name="test-piston-connect", daemon=True)
        thread.start()
        threads.append(thread)
        return ws

    yield start
    for thread in threads:
        thread.join(STALL)
        assert not thread.is_alive(), "the handler never returned"


def init(language: str = "python", content: str = PROGRAM, **fields) -> dict:
    return {"type": "init", "language": language, "version": "*", "files": [{"content": content}], **fields}


def sandbox_of(executor: FakeExecutor, ws: FakeWebSocket) -> FakeSandbox:
    ws.wait_for(lambda sent: any(m["type"] == "stage" for m in sent))
    [sandbox] = executor.sandboxes.values()
    return sandbox


def test_an_interactive_program_as_a_piston_client_sees_it(connect, executor):
    ws = connect()
    ws.client_sends(init(language="py3"))
    sandbox = sandbox_of(executor, ws)
    assert sandbox.code == PROGRAM.encode()
    sandbox.stdout("Name: ")
    ws.wait_for(lambda sent: sent[-1]["type"] == "data")
    ws.client_sends({"type": "data", "stream": "stdin", "data": "Ada\n"})
    assert sandbox.wait_writes(1) == [b"Ada\n"]
    sandbox.stdout("Hello Ada\n")
    sandbox.exit(0)
    assert ws.wait_closed() == (4999, "Job Completed")
    assert ws.sent == [
        {"type": "runtime", "language": "python", "version": "3.11"},
        {"type": "stage", "stage": "run"},
        {"type": "data", "stream": "stdout", "data": "Name: "},
        {"type": "data", "stream": "stdout", "data": "Hello Ada\n"},
        {"type": "exit", "stage": "run", "code": 0, "signal": None},
    ]


def test_a_compiled_program_has_a_compile_stage_then_a_run_stage(connect, executor):
    ws = connect()
    ws.client_sends(init(language="c++", content="int main() { return 3; }"))
    sandbox = sandbox_of(executor, ws)
    sandbox.stderr("main.cpp: warning\n")
    sandbox.compiled(0)
    ws.wait_for(lambda sent: sent[-1] == {"type": "stage", "stage": "run"})
    sandbox.exit(3)
    assert ws.wait_closed() == (4999, "Job Completed")
    assert ws.sent[1:] == [
        {"type": "stage", "stage": "compile"},
        {"type": "data", "stream": "stderr", "data": "main.cpp: warning\n"},
        {"type": "exit", "stage": "compile", "code": 0, "signal": None},
        {"type": "stage", "stage": "run"},
        {"type": "exit", "stage": "run", "code": 3, "signal": None},
    ]
    assert ws.sent[0] == {"type": "runtime", "language": "c++", "version": "12"}


def test_a_failed_compile_ends_with_the_compile_stages_exit(connect, executor):
    ws = connect()
    ws.client_sends(init(language="c", content="int main() { return x; }"))
    sandbox = sandbox_of(executor, ws)
    sandbox.stderr("main.c:1: error: 'x' undeclared\n")
    sandbox.compiled(1)
    sandbox.exit(1)
    assert ws.wait_closed() == (4999, "Job Completed")
    assert ws.sent[-1] == {"type": "exit", "stage": "compile", "code": 1, "signal": None}
    assert {"type": "stage", "stage": "run"} not in ws.sent


def test_signals_reach_the_program_and_a_killed_one_exits_with_its_signal(connect, executor):
    ws = connect()
    ws.client_sends(init())
    sandbox = sandbox_of(executor, ws)
    ws.client_sends({"type": "signal", "signal": "SIGINT"})
    ws.client_sends({"type": "unknown, ignored as Piston ignores it"})
    ws.client_sends({"type": "signal", "signal": "SIGKILL"})
    ws.wait_for(lambda sent: len(sandbox.signals) == 2)
    assert sandbox.signals == ["SIGINT", "SIGKILL"]
    sandbox.exit(137)
    assert ws.wait_closed() == (4999, "Job Completed")
    assert ws.sent[-1] == {"type": "exit", "stage": "run", "code": None, "signal": "SIGKILL"}


def test_stdin_given_with_init_is_the_programs_first_input(connect, executor):
    ws = connect()
    ws.client_sends(init(stdin="Ada\n"))
    sandbox = sandbox_of(executor, ws)
    assert sandbox.wait_writes(1) == [b"Ada\n"]
    sandbox.exit(0)
    ws.wait_closed()


def test_a_run_past_the_timeout_the_client_asked_for_is_killed(connect, executor):
    ws = connect()
    ws.client_sends(init(run_timeout=50))
    sandbox = sandbox_of(executor, ws)
    assert ws.wait_closed() == (4999, "Job Completed")
    assert sandbox.kills == 1
    assert ws.sent[-1] == {"type": "exit", "stage": "run", "code": None, "signal": "SIGKILL"}


def test_a_client_that_goes_away_ends_its_program(app, connect, executor):
    ws = connect()
    ws.client_sends(init())
    sandbox = sandbox_of(executor, ws)
    ws.client_goes_away()
    assert sandbox.removed.wait(STALL)
    session = app.extensions[EXTENSION].engine.describe(sandbox.session_id)
    assert (session["state"], session["reason"]) == ("TERMINATED", "client_disconnected")


@pytest.mark.parametrize(
    "messages,code,reason",
    [
        ([{"type": "data", "stream": "stdin", "data": "x"}], 4003, "Not yet initialized"),
        ([{"type": "signal", "signal": "SIGINT"}], 4003, "Not yet initialized"),
        ([init(), init()], 4000, "Already Initialized"),
        ([init(), {"type": "data", "stream": "stdout", "data": "x"}], 4004, "Can only write to stdin"),
        ([init(), {"type": "signal", "signal": "SIGSTOP"}], 4005, "Invalid signal"),
        ([init(), {"type": "signal", "signal": 9}], 4005, "Invalid signal"),
    ],
)
def test_what_piston_refuses_closes_with_pistons_code(connect, executor, messages, code, reason):
    ws = connect()
    for message in messages:
        ws.client_sends(message)
    assert ws.wait_closed() == (code, reason)
    # Whatever had started is ended and removed.
    for sandbox in list(executor.sandboxes.values()):
        assert sandbox.removed.wait(STALL)


@pytest.mark.parametrize(
    "message,error",
    [
        ("{nope", "the message is not valid JSON: Expecting property name enclosed in double quotes"),
        ("[1]", "a message must be a JSON object with a 'type'"),
        (init(language="cobol"), "cobol-* runtime is unknown"),
        (init(run_timeout=12001), "run_timeout cannot exceed the configured limit of 12000"),
        ({**init(), "files": None}, "files is required as an array"),
        ({**init(), "files": [{"content": "a"}, {"content": "b"}]}, "connect runs one file"),
        (init(args=["1"]), "connect takes no args"),
    ],
)
def test_an_error_is_told_then_closed_with_4002(connect, executor, message, error):
    ws = connect()
    ws.client_sends(message)
    assert ws.wait_closed() == (4002, "Notified Error")
    assert [m["type"] for m in ws.sent] == ["error"]
    assert ws.sent[0]["message"].startswith(error)
    assert executor.sandboxes == {}


def test_a_bad_message_mid_run_is_told_and_ends_the_run(connect, executor):
    ws = connect()
    ws.client_sends(init())
    sandbox = sandbox_of(executor, ws)
    ws.client_sends({"type": "data", "stream": "stdin", "data": 5})
    assert ws.wait_closed() == (4002, "Notified Error")
    assert ws.sent[-1] == {"type": "error", "message": "data must be a string"}
    assert sandbox.removed.wait(STALL)


def test_no_init_in_time_is_4001(connect, monkeypatch):
    monkeypatch.setattr(piston_ws, "INIT_TIMEOUT", 0.05)
    ws = connect()
    assert ws.wait_closed() == (4001, "Initialization Timeout")
    assert ws.sent == []


def test_at_capacity_is_told_then_closed(connect, executor, app):
    engine = app.extensions[EXTENSION].engine
    engine.create_session("python", "x")
    engine.create_session("python", "x")
    ws = connect()
    ws.client_sends(init())
    assert ws.wait_closed() == (4002, "Notified Error")
    assert "in use" in ws.sent[0]["message"]


def test_a_runtime_that_cannot_start_the_program_is_told_and_leaves_nothing(connect, executor, app):
    claim = executor.claim

    def claim_a_sandbox_that_will_not_start(session_id, owner, ref=None):
        executor.sandboxes[session_id].start_error = RuntimeUnavailable("Docker went away")
        return claim(session_id, owner, ref)

    executor.claim = claim_a_sandbox_that_will_not_start
    ws = connect()
    ws.client_sends(init())
    assert ws.wait_closed() == (4002, "Notified Error")
    assert "Docker went away" in ws.sent[-1]["message"]
    # The runtime message came first: the session existed; it is over now.
    assert ws.sent[0]["type"] == "runtime"
    [session_id] = executor.refs
    assert app.extensions[EXTENSION].engine.describe(session_id)["state"] == "TERMINATED"


def test_a_session_is_the_connecting_keys_and_counts_against_its_limit(connect, executor, app):
    alice = Key("alice", DEFAULT_SCOPES, max_sessions=1)
    ws = connect(alice)
    ws.client_sends(init())
    sandbox = sandbox_of(executor, ws)
    [session_id] = executor.refs
    engine = app.extensions[EXTENSION].engine
    assert engine.records.read(session_id).key == "alice"
    assert engine.describe(session_id, alice)["state"] == "RUNNING"
    second = connect(alice)
    second.client_sends(init())
    assert second.wait_closed() == (4002, "Notified Error")
    assert "'alice' is at its limit of 1" in second.sent[0]["message"]
    sandbox.exit(0)
    assert ws.wait_closed() == (4999, "Job Completed")
