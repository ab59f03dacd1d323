"""The WebSocket handler's side of client messages: each is acted on or answered, none is fatal."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fakes import FakeClient, FakeExecutor
from test_protocol import HOSTILE

from sandbox_engine.config import Config
from sandbox_engine.engine import Engine
from sandbox_engine.records import RecordStore
from sandbox_engine.session import SessionRun
from sandbox_engine.ws import handle_message

END = 5.0


@pytest.fixture
def engine(tmp_path, executor: FakeExecutor) -> Iterator[Engine]:
    engine = Engine(
        Config(state_dir=str(tmp_path / "state")), executor, RecordStore(str(tmp_path / "records"))
    )
    yield engine
    engine.shutdown()


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


@pytest.fixture
def run(engine: Engine, client: FakeClient) -> SessionRun:
    session_id = engine.create_session("python", "print(input())\n")
    return engine.attach(session_id, client)


def errors(client: FakeClient) -> list[str]:
    return [m["message"] for m in client.messages if m["type"] == "error"]


def test_each_hostile_message_is_answered_and_the_program_still_gets_its_input(run, client, executor):
    sandbox = executor.sandboxes[run.sandbox.session_id]
    for raw, says in HOSTILE:
        handle_message(run, raw, client.emit)
        assert says in errors(client)[-1]
    assert len(errors(client)) == len(HOSTILE)
    handle_message(run, json.dumps({"type": "input", "data": "Ada\n"}), client.emit)
    assert sandbox.wait_writes(1)[-1] == b"Ada\n"
    sandbox.stdout("Ada\n")
    sandbox.exit(0)
    assert run.wait(END)
    assert client.final == {
        "type": "state",
        "state": "FINISHED",
        "exitCode": 0,
        "reason": "exited",
        "signal": None,
        "usage": None,
    }


def test_an_unexpected_failure_is_logged_and_answered_not_raised(run, client, executor, caplog):
    sandbox = executor.sandboxes[run.sandbox.session_id]
    sandbox.signal_error = RuntimeError("a bug, deep down")
    handle_message(run, '{"type": "signal", "signal": "SIGINT"}', client.emit)
    assert errors(client) == ["the server could not act on that message"]
    assert "a bug, deep down" in caplog.text
    # The session carries on: the next message is acted on.
    sandbox.signal_error = None
    handle_message(run, '{"type": "signal", "signal": "SIGINT"}', client.emit)
    assert sandbox.signals == ["SIGINT"]
    sandbox.exit(0)
    assert run.wait(END)
