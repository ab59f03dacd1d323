"""The log: a line per request and per end, in JSON or text, without a secret, code or output."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from fakes import FakeClient, FakeExecutor
from flask import Flask
from flask.testing import FlaskClient

from sandbox_engine import batch, create_app, logs
from sandbox_engine.batch import RunResult, Stage, Status, Usage, Verdict
from sandbox_engine.config import Config
from sandbox_engine.keys import KeyStore, Scope
from sandbox_engine.worker import EXTENSION

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECRET = "sk-live-0123456789abcdef"
CODE = "print('the secret sauce')\n"


@pytest.fixture
def app(tmp_path, executor: FakeExecutor) -> Iterator[Flask]:
    app = create_app(Config(state_dir=str(tmp_path / "state")), executor=executor)
    app.config["TESTING"] = True
    yield app
    app.extensions[EXTENSION].shutdown()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def lines(caplog) -> Iterator:
    """The log as the server writes it with --log-format json: each record, one parsed line."""
    caplog.set_level(logging.INFO, logger="sandbox_engine")
    formatter = logs.JsonFormatter()

    def parsed(logger: str | None = None) -> list[dict]:
        out = [json.loads(formatter.format(r)) for r in caplog.records]
        return [line for line in out if logger is None or line["logger"] == logger]

    yield parsed


def test_a_request_gets_an_id_echoed_and_one_line(client, lines):
    response = client.post("/session", json={"language": "python", "code": CODE})
    assert response.status_code == 201
    [line] = lines("sandbox_engine.access")
    assert line["requestId"] == response.headers["X-Request-Id"]
    assert len(line["requestId"]) == 32
    assert line["message"] == "request"
    assert (line["method"], line["route"], line["status"], line["key"], line["error"]) == (
        "POST",
        "/session",
        201,
        None,
        None,
    )
    assert 0 <= line["durationMs"] < 5000
    assert line["time"].endswith("Z") and line["level"] == "INFO"


def test_the_route_is_the_rule_never_the_session_id(client, lines):
    session_id = client.post("/session", json={"language": "python", "code": CODE}).get_json()["sessionId"]
    assert client.get(f"/session/{session_id}").status_code == 200
    assert client.get("/session/" + "0" * 36).status_code == 404
    assert client.get("/nowhere/at/all").status_code == 404
    got, unknown, nowhere = lines("sandbox_engine.access")[1:]
    assert (got["route"], got["status"]) == ("/session/<session_id>", 200)
    assert (unknown["route"], unknown["status"], unknown["error"]) == (
        "/session/<session_id>",
        404,
        "not_found",
    )
    assert (nowhere["route"], nowhere["error"]) == (None, "not_found")
    assert session_id not in json.dumps(lines("sandbox_engine.access"))


def test_a_refusal_names_its_code(client, lines):
    assert client.post("/session", json={"language": "cobol", "code": CODE}).status_code == 400
    [line] = lines("sandbox_engine.access")
    assert (line["status"], line["error"]) == (400, "unknown_language")


HOSTILE = 'x" {"forged": 1} ' + "y" * 100


def test_a_proxys_request_id_is_kept_when_it_looks_like_one(client, lines):
    kept = client.get("/healthz", headers={"X-Request-Id": "3f2a9c0d1e"})
    assert kept.headers["X-Request-Id"] == "3f2a9c0d1e"
    hostile = client.get("/healthz", headers={"X-Request-Id": HOSTILE})
    assert hostile.headers["X-Request-Id"] != HOSTILE
    assert [line["requestId"] for line in lines("sandbox_engine.access")] == [
        "3f2a9c0d1e",
        hostile.headers["X-Request-Id"],
    ]


def test_the_key_name_is_logged_never_its_secret(app, client, lines):
    keys = KeyStore.for_config(app.config["SANDBOX"])
    secret = keys.create("teaching-site", frozenset({Scope.SESSION}))
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/session/" + "0" * 36, headers=headers).status_code == 404
    assert client.get("/metrics", headers=headers).status_code == 403
    assert client.get("/languages").status_code == 401
    found, forbidden, unauthorized = lines("sandbox_engine.access")
    assert (found["key"], found["error"]) == ("teaching-site", "not_found")
    assert (forbidden["key"], forbidden["route"], forbidden["error"]) == (None, "/metrics", "forbidden")
    assert (unauthorized["key"], unauthorized["error"]) == (None, "unauthorized")
    assert secret not in json.dumps(lines())


def test_no_secret_code_input_or_output_reaches_the_log(app, client, executor, lines):
    headers = {"Authorization": f"Bearer {SECRET}", "X-Auth-Token": SECRET, "Cookie": f"s={SECRET}"}
    session_id = client.post("/session", json={"language": "python", "code": CODE}, headers=headers)
    session_id = session_id.get_json()["sessionId"]
    ws = FakeClient()
    run = app.extensions[EXTENSION].engine.attach(session_id, ws)
    executor.sandboxes[session_id].stdout("the output itself\n")
    executor.sandboxes[session_id].exit(0)
    assert run.wait(5)
    client.post(
        "/api/v2/execute",
        json={"language": "python", "version": "*", "files": [{"content": CODE}], "stdin": "the input"},
        headers=headers,
    )
    text = json.dumps(lines())
    for secret in (SECRET, "secret sauce", "the output itself", "the input"):
        assert secret not in text


def test_a_session_ends_with_one_line_of_how(app, client, executor, lines):
    session_id = client.post("/session", json={"language": "python", "code": CODE}).get_json()["sessionId"]
    ws = FakeClient()
    run = app.extensions[EXTENSION].engine.attach(session_id, ws)
    executor.sandboxes[session_id].stdout("héllo\n")
    executor.sandboxes[session_id].exit(3)
    assert run.wait(5)
    [line] = lines("sandbox_engine.ends")
    assert line["message"] == "session ended"
    assert {k: line[k] for k in ("sessionId", "language", "reason", "exitCode", "outputBytes", "usage")} == {
        "sessionId": session_id,
        "language": "python",
        "reason": "exited",
        "exitCode": 3,
        "outputBytes": 7,
        "usage": None,
    }
    assert line["durationMs"] >= 0


def test_an_unattached_session_that_is_deleted_ends_with_a_line_too(client, lines):
    session_id = client.post("/session", json={"language": "python", "code": CODE}).get_json()["sessionId"]
    client.delete(f"/session/{session_id}")
    [line] = lines("sandbox_engine.ends")
    assert (line["sessionId"], line["reason"], line["exitCode"], line["outputBytes"]) == (
        session_id,
        "killed",
        None,
        None,
    )


def test_a_runs_ending_is_its_last_stage_and_all_its_output():
    usage = Usage(1.0, 2.0, 1024)
    compiled = Stage(Status.OK, 0, stderr=b"warning\n", usage=Usage(9.0, 9.0, 9))
    first = Stage(Status.OK, 0, stdout=b"1\n", usage=usage)
    last = Stage(Status.RUNTIME_ERROR, 1, stdout=b"2\n", stderr=b"oops\n", usage=usage)
    tests = (
        batch.TestResult("a", first, Verdict.ACCEPTED),
        batch.TestResult("b", last, Verdict.RUNTIME_ERROR),
    )
    result = RunResult("c", "12", compiled, None, tests)
    assert result.ending() == {"exit_code": 1, "usage": usage.public(), "output_bytes": 8 + 2 + 7}
    assert RunResult("c", "12", None, None).ending() == {"exit_code": None, "usage": None, "output_bytes": 0}


def record(message: str = "request", exc: bool = False, **fields) -> logging.LogRecord:
    """A log record as logs.event makes one (its fields in `extra`), with a traceback if exc."""
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    made = logging.LogRecord("sandbox_engine.access", logging.INFO, __file__, 1, message, None, exc_info)
    setattr(made, logs.FIELDS, fields)
    return made


def test_a_json_line_is_one_object_with_the_fields_beside_time_level_and_message():
    text = logs.JsonFormatter().format(record(status=201, route="/session", usage={"cpuTimeMs": 1.5}))
    assert "\n" not in text
    line = json.loads(text)
    assert list(line)[:4] == ["time", "level", "logger", "message"]
    assert (line["status"], line["route"], line["usage"]) == (201, "/session", {"cpuTimeMs": 1.5})


def test_an_exception_stays_on_its_json_line():
    text = logs.JsonFormatter().format(record("failed", exc=True))
    assert "\n" not in text
    assert "ValueError: boom" in json.loads(text)["exception"]


def test_a_text_line_is_for_a_person():
    text = logs.TextFormatter().format(record(status=201, key=None, usage={"cpuTimeMs": 1.5}))
    expected = (
        f' [{os.getpid()}] INFO sandbox_engine.access: request status=201 key=- usage={{"cpuTimeMs":1.5}}'
    )
    assert text.endswith(expected) and text[:24].endswith("Z")


def test_auto_is_text_at_a_terminal_and_json_elsewhere():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert logs.resolve("auto", Terminal()) == "text"
    assert logs.resolve("auto", io.StringIO()) == "json"
    assert logs.resolve("text", io.StringIO()) == "text"


def test_the_servers_logging_puts_gunicorns_lines_and_ours_on_stderr_as_json():
    code = textwrap.dedent(
        """
        import logging, logging.config
        from sandbox_engine import logs
        logging.config.dictConfig(logs.logconfig("json"))
        logging.getLogger("gunicorn.error").info("Booting worker with pid: %d", 42)
        logs.event(logging.getLogger("sandbox_engine.access"), "request", status=200)
        logging.getLogger("sandbox_engine.pool").debug("not shown")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == ""
    booting, request = (json.loads(line) for line in done.stderr.splitlines())
    assert (booting["logger"], booting["message"]) == ("gunicorn.error", "Booting worker with pid: 42")
    assert (request["logger"], request["status"]) == ("sandbox_engine.access", 200)
