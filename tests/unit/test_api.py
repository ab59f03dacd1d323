"""The HTTP API as a client sees it: statuses, headers and JSON bodies, over a fake executor."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fakes import FakeClient, FakeExecutor
from flask import Flask
from flask.testing import FlaskClient

from sandbox_engine import create_app
from sandbox_engine.config import Config
from sandbox_engine.engine import Engine
from sandbox_engine.executor import ExecutorError, RuntimeUnavailable
from sandbox_engine.languages import LANGUAGES
from sandbox_engine.protocol import MAX_COLS, MAX_ROWS
from sandbox_engine.worker import EXTENSION

CODE = "print('hello')\n"
# The core engine issue's interactive example, which the IDE opens on.
INTERACTIVE = """\
import time
print("Program started")
name = input("Enter your name: ")
print("Hello", name)
for i in range(5):
    time.sleep(1)
    print(i)
"""
SESSION_FIELDS = [
    "sessionId",
    "language",
    "state",
    "exitCode",
    "reason",
    "signal",
    "createdAt",
    "startedAt",
    "endedAt",
    "usage",
]


@pytest.fixture
def app(tmp_path, executor: FakeExecutor) -> Iterator[Flask]:
    config = Config(state_dir=str(tmp_path / "state"), max_code_size=1000, max_sessions=2)
    app = create_app(config, executor=executor)
    app.config["TESTING"] = True
    yield app
    executor.error = None
    # Stops the reaper the first request started, and ends any run a test attached.
    app.extensions[EXTENSION].shutdown()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def engine_of(app: Flask) -> Engine:
    return app.extensions[EXTENSION].engine


def error_of(response, status: int, code: str) -> str:
    """Assert an error response's status and exact body shape; return its message."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert list(body) == ["error"]
    assert sorted(body["error"]) == ["code", "message"]
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]["message"]


def create(client: FlaskClient, code: str = CODE, language: str = "python") -> str:
    response = client.post("/session", json={"language": language, "code": code})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["sessionId"]


# --- POST /session --------------------------------------------------------------------------


def test_create_answers_201_with_a_uuid4_session_id(app, client, executor):
    response = client.post("/session", json={"language": "python", "code": CODE})
    assert response.status_code == 201
    body = response.get_json()
    assert list(body) == ["sessionId"]
    session_id = body["sessionId"]
    assert str(uuid.UUID(session_id, version=4)) == session_id
    assert response.headers["Location"] == f"/session/{session_id}"
    assert engine_of(app).records.read_code(session_id) == CODE.encode()


@pytest.mark.parametrize(
    "headers",
    [{"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}, {}],
)
def test_a_body_that_is_not_declared_json_is_415(client, headers):
    response = client.post("/session", data='{"language": "python", "code": "1"}', headers=headers)
    error_of(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("data", ["{not json", "", '{"language": "python",', b'{"code": "\xff"}'])
def test_a_body_that_is_not_json_is_invalid_json(client, data):
    response = client.post("/session", data=data, content_type="application/json")
    error_of(response, 400, "invalid_json")


@pytest.mark.parametrize(
    "data",
    [
        "[" * 10_000,
        '{"language": "python", "code": "x", "tty": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"a":' * 2000,
        '{"language": "python", "code": "print(1)", "tty": true, "cols": ' + "9" * 5000 + "}",
        '{"language": ' + "1" * 4000 + ', "code": "x"}',
        '{"language": "python", "code": "print(1)", "tty": true, "cols": NaN}',
        '{"language": "python", "code": "print(1)", "tty": true, "rows": -Infinity}',
    ],
    ids=["deep-array", "deep-in-a-field", "deep-object", "huge-cols", "huge-language", "nan", "infinity"],
)
def test_a_hostile_body_is_invalid_json_without_quoting_it(client, executor, data):
    response = client.post("/session", data=data, content_type="application/json")
    message = error_of(response, 400, "invalid_json")
    assert message.startswith("the body is not valid JSON") and len(message) < 100
    assert executor.sandboxes == {}


@pytest.mark.parametrize(
    "body",
    [
        ["python", CODE],
        "python",
        {"language": "python"},
        {"language": "python", "code": None},
        {"language": "python", "code": 42},
        {"language": "python", "code": ["print(1)"]},
        {"language": "python", "code": ""},
        {"language": "python", "code": "  \n\t"},
        {"code": CODE},
        {"language": "", "code": CODE},
        {"language": 3, "code": CODE},
        {"language": "python", "code": "print(1)\x00"},
        {"language": "python", "code": CODE, "tty": "true"},
        {"language": "python", "code": CODE, "tty": True, "cols": True},
        {"language": "python", "code": CODE, "tty": True, "cols": 1e300},
        {"language": "python", "code": CODE, "tty": True, "rows": 24.5},
    ],
)
def test_a_malformed_request_is_invalid_request(client, executor, body):
    error_of(client.post("/session", json=body), 400, "invalid_request")
    assert executor.sandboxes == {}


def test_an_unknown_language_is_400_naming_the_known_ones(client):
    message = error_of(
        client.post("/session", json={"language": "cobol", "code": CODE}), 400, "unknown_language"
    )
    assert "python" in message


def test_an_unknown_language_is_quoted_only_in_part(client):
    body = {"language": "\ud800" + "x" * 5000, "code": CODE}
    message = error_of(client.post("/session", json=body), 400, "unknown_language")
    assert "'\\ud800xxx" in message and "x" * 50 not in message and "python" in message


def test_a_terminal_size_in_whole_floats_is_taken(app, client, executor):
    body = {"language": "python", "code": CODE, "tty": True, "cols": 100.0, "rows": 3e1}
    response = client.post("/session", json=body)
    assert response.status_code == 201, response.get_data(as_text=True)
    record = engine_of(app).records.read(response.get_json()["sessionId"])
    assert (record.cols, record.rows) == (100, 30)
    assert type(record.cols) is int and type(record.rows) is int


def test_code_over_the_limit_is_413(client):
    response = client.post("/session", json={"language": "python", "code": "x" * 1001})
    error_of(response, 413, "too_large")


def test_a_body_over_the_request_limit_is_413_json(client):
    # Far over max_code_size, refused before the body is read.
    response = client.post("/session", json={"language": "python", "code": "x" * 100_000})
    error_of(response, 413, "too_large")


def test_at_capacity_is_429_with_retry_after(client):
    create(client)
    create(client)
    response = client.post("/session", json={"language": "python", "code": CODE})
    error_of(response, 429, "at_capacity")
    assert response.headers["Retry-After"] == "5"


def test_a_runtime_that_is_down_is_503(client, executor):
    executor.error = RuntimeUnavailable("the Docker daemon is not running")
    response = client.post("/session", json={"language": "python", "code": CODE})
    assert "not running" in error_of(response, 503, "runtime_unavailable")
    assert "Retry-After" not in response.headers


def test_a_runtime_failure_is_500_internal_error(client, executor):
    executor.error = ExecutorError("disk full")
    error_of(client.post("/session", json={"language": "python", "code": CODE}), 500, "internal_error")


def test_pool_without_a_pool_is_an_empty_list_even_when_docker_is_down(client, executor):
    assert client.get("/pool").get_json() == {"pool": []}
    executor.error = RuntimeUnavailable("the Docker daemon is not running")
    assert client.get("/pool").get_json() == {"pool": []}


def test_pool_levels_and_503_when_docker_is_down(tmp_path, executor):
    config = Config(state_dir=str(tmp_path / "state"), pool_size="python=2,python/tty=1")
    app = create_app(config, executor=executor)
    pool = app.extensions[EXTENSION].pool
    try:
        pool.refill()
        assert app.test_client().get("/pool").get_json() == {
            "pool": [
                {"language": "python", "tty": False, "size": 2, "warm": 2},
                {"language": "python", "tty": True, "size": 1, "warm": 1},
            ]
        }
        executor.error = RuntimeUnavailable("the Docker daemon is not running")
        error_of(app.test_client().get("/pool"), 503, "runtime_unavailable")
    finally:
        executor.error = None
        app.extensions[EXTENSION].shutdown()


# --- GET and DELETE /session/<id> -----------------------------------------------------------


def test_get_session_describes_a_created_session(client):
    session_id = create(client)
    response = client.get(f"/session/{session_id}")
    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == SESSION_FIELDS
    assert body["sessionId"] == session_id
    assert (body["language"], body["state"]) == ("python", "CREATED")
    assert (body["exitCode"], body["reason"], body["startedAt"], body["endedAt"]) == (None, None, None, None)
    assert body["createdAt"].endswith("Z")


def test_get_session_after_the_program_ran(app, client, executor):
    session_id = create(client)
    ws = FakeClient()
    run = engine_of(app).attach(session_id, ws)
    assert client.get(f"/session/{session_id}").get_json()["state"] == "RUNNING"
    executor.sandboxes[session_id].stdout("hello\n")
    executor.sandboxes[session_id].exit(2)
    assert run.wait(5)
    body = client.get(f"/session/{session_id}").get_json()
    assert (body["state"], body["exitCode"], body["reason"]) == ("FINISHED", 2, "exited")
    assert body["createdAt"] <= body["startedAt"] <= body["endedAt"]


@pytest.mark.parametrize(
    "session_id", [str(uuid.uuid4()), "not-a-session", "3B241101-E2BB-4255-8CAF-4136C566A962"]
)
def test_an_unknown_session_is_404_json(client, session_id):
    error_of(client.get(f"/session/{session_id}"), 404, "not_found")
    error_of(client.delete(f"/session/{session_id}"), 404, "not_found")


def test_an_unknown_session_id_is_quoted_only_in_part(client):
    assert len(error_of(client.get("/session/" + "a" * 3000), 404, "not_found")) < 100


def test_delete_answers_204_and_the_session_is_then_terminated(client, executor):
    session_id = create(client)
    response = client.delete(f"/session/{session_id}")
    assert response.status_code == 204
    assert response.get_data() == b""
    body = client.get(f"/session/{session_id}").get_json()
    assert (body["state"], body["reason"], body["exitCode"]) == ("TERMINATED", "killed", None)
    assert body["endedAt"].endswith("Z")
    assert executor.sandboxes == {}
    # Deleting again is fine: the session is already over.
    assert client.delete(f"/session/{session_id}").status_code == 204


# --- other routes ---------------------------------------------------------------------------


def test_languages(client):
    response = client.get("/languages")
    assert response.status_code == 200
    languages = response.get_json()["languages"]
    assert [language["id"] for language in languages] == list(LANGUAGES)
    fields = ["id", "name", "version", "extensions", "editorMode", "example", "sourceFile"]
    assert all(list(language) == fields for language in languages)
    # The IDE opens on Python's example, the core engine issue's interactive program.
    assert languages[0] == {
        "id": "python",
        "name": "Python",
        "version": "3.11",
        "extensions": [".py"],
        "editorMode": "python",
        "example": INTERACTIVE,
        "sourceFile": "main.py",
    }


def test_languages_give_the_cli_and_the_ide_what_they_need(client):
    languages = {language["id"]: language for language in client.get("/languages").get_json()["languages"]}
    # Which editor mode a language uses is the server's word: bash is highlighted as a shell.
    assert languages["bash"]["editorMode"] == "shell"
    assert languages["bash"]["extensions"] == [".sh", ".bash"]
    assert languages["cpp"]["extensions"] == [".cpp", ".cc", ".cxx"]
    owners: dict[str, str] = {}
    for language in languages.values():
        assert language["extensions"], language["id"]
        for extension in language["extensions"]:
            assert extension.startswith(".") and extension == extension.lower(), extension
            # The CLI picks a file's language by its extension: each extension names one language.
            assert owners.setdefault(extension, language["id"]) == language["id"], extension
        assert isinstance(language["editorMode"], str) and language["editorMode"], language["id"]
        # Every example is the interactive case: a prompt without a newline, then a line read.
        assert "Enter your name: " in language["example"], language["id"]
        assert language["example"].endswith("\n"), language["id"]


def test_languages_report_the_version_the_image_recorded(client, executor):
    executor.labels = {"sandbox-engine/python:latest": {"sandbox-engine.version.python": "3.11.2"}}
    assert client.get("/languages").get_json()["languages"][0]["version"] == "3.11.2"


def test_healthz(client):
    response = client.get("/healthz")
    assert (response.status_code, response.get_json()) == (200, {"status": "ok"})


def test_readyz_when_ready(client):
    response = client.get("/readyz")
    assert (response.status_code, response.get_json()) == (200, {"status": "ready"})


def test_readyz_says_why_it_is_not_ready(client, executor):
    executor.problem = "image sandbox-engine/python:latest is missing"
    message = error_of(client.get("/readyz"), 503, "runtime_unavailable")
    assert message == "image sandbox-engine/python:latest is missing"


@pytest.mark.parametrize("path", ["/nothing-here", "/session/", "/ws/session/", "/session/a/b"])
def test_unknown_routes_are_404_json(client, path):
    error_of(client.get(path), 404, "not_found")


def test_a_wrong_method_is_405_json(client):
    # /session exists for POST only.
    error_of(client.get("/session"), 405, "method_not_allowed")
    error_of(client.put("/session"), 405, "method_not_allowed")
    error_of(client.post("/languages"), 405, "method_not_allowed")


# --- WebSocket refusals, made before any upgrade --------------------------------------------

# A browser's opening handshake; the refusals must answer it with JSON, not with 101.
HANDSHAKE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def attach(client: FlaskClient, session_id: str, **headers: str):
    return client.get(f"/ws/session/{session_id}", headers={**HANDSHAKE, **headers})


@pytest.mark.parametrize("session_id", [str(uuid.uuid4()), "not-a-session"])
def test_attaching_to_an_unknown_session_is_404_before_any_upgrade(client, session_id):
    response = attach(client, session_id)
    error_of(response, 404, "not_found")
    assert "Sec-WebSocket-Accept" not in response.headers


def test_attaching_to_an_ended_session_is_410(client):
    session_id = create(client)
    client.delete(f"/session/{session_id}")
    error_of(attach(client, session_id), 410, "session_ended")


def test_attaching_to_an_attached_session_is_409(app, client):
    session_id = create(client)
    ws = FakeClient()
    engine_of(app).attach(session_id, ws)
    error_of(attach(client, session_id), 409, "already_attached")


def test_attaching_from_a_foreign_origin_is_403(client):
    session_id = create(client)
    response = attach(client, session_id, Origin="https://evil.example")
    assert "evil.example" in error_of(response, 403, "forbidden")
    # Nothing was claimed: the session can still be attached by its own page.
    assert client.get(f"/session/{session_id}").get_json()["state"] == "CREATED"
    # A header is client input too: quoted only in part.
    message = error_of(attach(client, session_id, Origin="https://" + "e" * 5000), 403, "forbidden")
    assert len(message) < 100


def test_the_ide_page_carries_the_protocols_terminal_limits(client):
    page = client.get("/").get_data(as_text=True)
    assert f'data-max-cols="{MAX_COLS}"' in page and f'data-max-rows="{MAX_ROWS}"' in page


def test_a_plain_get_of_a_websocket_url_gets_the_websockets_refusals_or_426(client):
    assert error_of(client.get("/ws/session/garbage"), 404, "not_found") == "no session 'garbage'"
    error_of(client.get(f"/ws/session/{uuid.uuid4()}"), 404, "not_found")
    error_of(client.get(f"/ws/session/{'x' * 5000}"), 404, "not_found")
    message = error_of(client.get(f"/ws/session/{create(client)}"), 426, "upgrade_required")
    assert "WebSocket" in message


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"language": "python", "code": "print(1)", "stdin": "abc"}, "unknown field 'stdin'"),
        ({"language": "python", "code": "x", "Tty": True}, "unknown field 'Tty'"),
        ({"language": "python"}, "'code' is missing"),
        ({"code": "print(1)"}, "'language' is missing"),
    ],
)
def test_unknown_and_missing_fields_are_named(client, body, says):
    message = error_of(client.post("/session", json=body), 400, "invalid_request")
    assert says in message
