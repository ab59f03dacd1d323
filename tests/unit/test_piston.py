"""Piston v2's HTTP API as its clients see it, over a fake executor and a fake batch runner."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakes import FakeExecutor, FakeRunner
from flask import Flask
from flask.testing import FlaskClient

from sandbox_engine import create_app
from sandbox_engine.batch import RequestLimits, RunResult, SourceFile, Stage, Status, Usage
from sandbox_engine.config import Config
from sandbox_engine.errors import EngineError, Kind
from sandbox_engine.executor import ExecutorError, RuntimeUnavailable
from sandbox_engine.languages import LANGUAGES, VERSION_LABEL
from sandbox_engine.worker import EXTENSION

HELLO = {"language": "python", "version": "*", "files": [{"content": "print('hello')"}]}
STAGE_FIELDS = [
    "stdout",
    "stderr",
    "code",
    "signal",
    "output",
    "memory",
    "message",
    "status",
    "cpu_time",
    "wall_time",
]


@pytest.fixture
def runner() -> FakeRunner:
    return FakeRunner(versions={"python": "3.11.2", "cpp": "12.2.0"})


@pytest.fixture
def app(tmp_path, executor: FakeExecutor, runner: FakeRunner) -> Iterator[Flask]:
    config = Config(state_dir=str(tmp_path / "state"), max_code_size=1000, run_timeout=12, memory=64 << 20)
    app = create_app(config, executor=executor)
    app.config["TESTING"] = True
    app.extensions[EXTENSION].runs = runner
    executor.labels["sandbox-engine/python:latest"] = {VERSION_LABEL + "python": "3.11.2"}
    executor.labels["sandbox-engine/gcc:latest"] = {
        VERSION_LABEL + "c": "12.2.0",
        VERSION_LABEL + "cpp": "12.2.0",
    }
    yield app
    app.extensions[EXTENSION].shutdown()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def message_of(response, status: int) -> str:
    """Assert Piston's error shape, `{"message": ...}`, and the status; return the message."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert list(body) == ["message"] and isinstance(body["message"], str) and body["message"]
    return body["message"]


# --- GET /api/v2/runtimes -------------------------------------------------------------------


def test_runtimes_list_every_language_with_the_version_its_image_recorded(client):
    runtimes = client.get("/api/v2/runtimes").get_json()
    assert len(runtimes) == len(LANGUAGES)
    assert runtimes[0] == {"language": "python", "version": "3.11.2", "aliases": ["py", "py3", "python3"]}
    cpp = next(rt for rt in runtimes if rt["language"] == "c++")
    assert cpp == {"language": "c++", "version": "12.2.0", "aliases": ["cpp", "g++"], "runtime": "gcc"}
    # Without a label, the version the spec expects.
    assert next(rt for rt in runtimes if rt["language"] == "java")["version"] == LANGUAGES["java"].version


# --- POST /api/v2/execute -------------------------------------------------------------------


def test_execute_runs_the_request_and_answers_as_piston(client, runner):
    runner.results.append(
        RunResult(
            "python",
            "3.11.2",
            compile=None,
            run=Stage(
                Status.OK,
                exit_code=0,
                stdout=b"hello\n",
                output=b"hello\n",
                usage=Usage(cpu_time_ms=21.5, wall_time_ms=48.25, memory_peak_bytes=7_340_032),
            ),
        )
    )
    response = client.post("/api/v2/execute", json={**HELLO, "language": "py", "stdin": "x", "args": ["1"]})
    assert response.status_code == 200
    assert response.get_json() == {
        "language": "python",
        "version": "3.11.2",
        "run": {
            "stdout": "hello\n",
            "stderr": "",
            "code": 0,
            "signal": None,
            "output": "hello\n",
            "memory": 7_340_032,
            "message": None,
            "status": None,
            "cpu_time": 21.5,
            "wall_time": 48.25,
        },
    }
    [request] = runner.requests
    assert request.language == "python"
    assert request.files == (SourceFile("file0.code", b"print('hello')"),)
    assert (request.stdin, request.args, request.limits) == (b"x\n", ("1",), RequestLimits())


def test_execute_passes_limits_below_the_servers_on(client, runner):
    limits = {
        "run_timeout": 3000,
        "compile_timeout": 10000,
        "run_memory_limit": 32 << 20,
        "compile_memory_limit": -1,
    }
    assert client.post("/api/v2/execute", json={**HELLO, **limits}).status_code == 200
    assert runner.requests[0].limits == RequestLimits(
        timeout_ms=3000, memory_bytes=32 << 20, compile_timeout_ms=10000, compile_memory_bytes=None
    )


def test_a_compiled_language_answers_both_stages(client, runner):
    compiled = Stage(Status.OK, exit_code=0)
    runner.results.append(
        RunResult("cpp", "12.2.0", compile=compiled, run=Stage(Status.RUNTIME_ERROR, exit_code=2))
    )
    body = client.post("/api/v2/execute", json={**HELLO, "language": "c++"}).get_json()
    assert (body["language"], list(body)) == ("c++", ["language", "version", "run", "compile"])
    assert list(body["run"]) == STAGE_FIELDS and list(body["compile"]) == STAGE_FIELDS
    assert (body["run"]["status"], body["run"]["code"], body["compile"]["code"]) == ("RE", 2, 0)


def test_a_limit_above_the_servers_is_refused_before_anything_runs(client, runner):
    response = client.post("/api/v2/execute", json={**HELLO, "run_timeout": 12001})
    assert message_of(response, 400) == "run_timeout cannot exceed the configured limit of 12000"
    response = client.post("/api/v2/execute", json={**HELLO, "run_memory_limit": (64 << 20) + 1})
    assert message_of(response, 400) == f"run_memory_limit cannot exceed the configured limit of {64 << 20}"
    assert runner.requests == []


@pytest.mark.parametrize(
    "body,message",
    [
        ({**HELLO, "language": "cobol"}, "cobol-* runtime is unknown"),
        ({**HELLO, "version": "2.7"}, "python-2.7 runtime is unknown"),
        ({**HELLO, "version": None}, "version is required as a string"),
        ({**HELLO, "files": "print(1)"}, "files is required as an array"),
        ([HELLO], "the body must be a JSON object"),
    ],
)
def test_a_bad_request_is_400_with_pistons_message(client, runner, body, message):
    assert message_of(client.post("/api/v2/execute", json=body), 400) == message
    assert runner.requests == []


@pytest.mark.parametrize("headers", [{"Content-Type": "text/plain"}, {}])
def test_a_body_not_sent_as_json_is_415_as_piston_answers_it(client, headers):
    response = client.post("/api/v2/execute", data='{"language": "python"}', headers=headers)
    assert message_of(response, 415) == "requests must be of type application/json"


@pytest.mark.parametrize("data", ["{nope", "NaN", "1" * 200, "[" * 5000])
def test_a_body_that_is_not_json_is_400(client, data):
    response = client.post("/api/v2/execute", data=data, headers={"Content-Type": "application/json"})
    assert message_of(response, 400).startswith("the body is not valid JSON")


def test_a_body_over_the_request_limit_is_413(client):
    response = client.post("/api/v2/execute", json={**HELLO, "files": [{"content": "x" * 20000}]})
    message_of(response, 413)


@pytest.mark.parametrize(
    "error,status",
    [
        (EngineError(Kind.UNKNOWN_LANGUAGE, "unknown language"), 400),
        (EngineError(Kind.TOO_LARGE, "the files are over the limit of 1000 bytes"), 413),
        (RuntimeUnavailable("Docker does not answer"), 503),
    ],
)
def test_a_runner_that_refuses_is_answered_with_its_status(client, runner, error, status):
    runner.error = error
    assert message_of(client.post("/api/v2/execute", json=HELLO), status) == str(error)


def test_at_capacity_is_429_with_retry_after(client, runner):
    runner.error = EngineError(Kind.AT_CAPACITY, "all 2 of the server's runs are in use", retry_after=5)
    response = client.post("/api/v2/execute", json=HELLO)
    assert "in use" in message_of(response, 429)
    assert response.headers["Retry-After"] == "5"


def test_a_runtime_failure_and_a_bug_are_answered_in_pistons_shape(client, runner, caplog):
    runner.error = ExecutorError("the container vanished")
    assert message_of(client.post("/api/v2/execute", json=HELLO), 500) == "the container vanished"
    runner.error = RuntimeError("a bug, deep down")
    assert message_of(client.post("/api/v2/execute", json=HELLO), 500) == "internal error"
    assert "a bug, deep down" in caplog.text


def test_without_batch_runs_execute_is_503_and_the_rest_still_works(app, client):
    app.extensions[EXTENSION].runs = None
    assert "batch runs" in message_of(client.post("/api/v2/execute", json=HELLO), 503)
    assert client.get("/api/v2/runtimes").status_code == 200


# --- routing --------------------------------------------------------------------------------


def test_unknown_paths_and_methods_under_api_v2_are_answered_in_pistons_shape(client):
    message_of(client.get("/api/v2/nope"), 404)
    message_of(client.get("/api/v2/execute"), 405)
    message_of(client.post("/api/v2/runtimes"), 405)
    # Ours keep our shape.
    assert list(client.get("/nope").get_json()) == ["error"]


def test_a_plain_get_of_connect_is_426(client):
    assert "WebSocket" in message_of(client.get("/api/v2/connect"), 426)


def test_connect_from_a_foreign_origin_is_403_before_any_upgrade(client):
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        "Origin": "https://evil.example",
    }
    response = client.get("/api/v2/connect", headers=headers)
    assert "evil.example" in message_of(response, 403)
    assert "Sec-WebSocket-Accept" not in response.headers
