"""The HTTP API's answers through the real server: shapes, errors and capacity."""

from __future__ import annotations

import os
import uuid

import described
import pytest
import requests
from harness import LANGUAGE_IDS, ROOT

# Every test here runs a real server on the real Docker daemon.
pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_languages_and_health(server):
    languages = requests.get(f"{server.url}/languages", timeout=10).json()
    ids = [language["id"] for language in languages["languages"]]
    assert ids == LANGUAGE_IDS
    # The version really installed, as the image's build recorded it: 3.11.2, not 3.11.
    python = languages["languages"][0]
    assert python["name"] == "Python" and python["version"].startswith("3.11.")
    assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200
    assert requests.get(f"{server.url}/readyz", timeout=10).json() == {"status": "ready"}


def test_session_shape_after_create(server):
    session_id = server.create("print(1)")
    assert uuid.UUID(session_id).version == 4
    info = server.session(session_id)
    assert list(info) == [
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
    assert info["state"] == "CREATED" and info["startedAt"] is None and info["exitCode"] is None
    requests.delete(f"{server.url}/session/{session_id}", timeout=10)


def error(response: requests.Response) -> tuple[int, str]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"} and body["error"]["message"]
    return response.status_code, body["error"]["code"]


def test_bad_requests_get_clear_json_errors(server):
    url = f"{server.url}/session"
    assert error(requests.post(url, data="language=python", timeout=10)) == (415, "unsupported_media_type")
    bad_json = requests.post(url, data="{nope", headers={"Content-Type": "application/json"}, timeout=10)
    assert error(bad_json) == (400, "invalid_json")
    assert error(requests.post(url, json={"code": "print(1)"}, timeout=10)) == (400, "invalid_request")
    assert error(requests.post(url, json={"language": "python", "code": 5}, timeout=10)) == (
        400,
        "invalid_request",
    )
    assert error(server.post("   ")) == (400, "invalid_request")
    assert error(server.post("print(1)", language="cobol")) == (400, "unknown_language")
    assert error(server.post("x" * 262145)) == (413, "too_large")
    assert error(requests.get(f"{server.url}/session/{uuid.uuid4()}", timeout=10)) == (404, "not_found")
    assert error(requests.get(f"{server.url}/session/not-a-uuid", timeout=10)) == (404, "not_found")
    assert error(requests.get(f"{server.url}/nowhere", timeout=10)) == (404, "not_found")
    # The server keeps serving everyone after all that.
    assert server.run("print('ok')").text() == "ok\n"


def test_hostile_bodies_are_400_invalid_json(server):
    # Within the body limit (max_code_size * 6), each once a 500 or worse.
    for data in (
        "[" * 200_000,
        '{"language": "python", "code": "print(1)", "x": ' + '{"a":' * 200_000,
        '{"language": "python", "code": "print(1)", "tty": true, "cols": ' + "9" * 5000 + "}",
        '{"language": "python", "code": "print(1)", "tty": true, "cols": NaN}',
    ):
        response = requests.post(
            f"{server.url}/session", data=data, headers={"Content-Type": "application/json"}, timeout=10
        )
        assert error(response) == (400, "invalid_json")
        assert len(response.json()["error"]["message"]) < 100
    assert server.run("print('ok')").text() == "ok\n"


def test_code_at_the_size_limit_is_accepted(server):
    code = "#" * 262143 + "\n"
    response = server.post(code)
    assert response.status_code == 201
    requests.delete(f"{server.url}/session/{response.json()['sessionId']}", timeout=10)


def test_large_code_reaches_the_program_intact(server):
    # Larger than one environment chunk, with multi-byte characters across chunk edges.
    payload = "ü€😀" * 9000
    code = f"s = {payload!r}\nprint(len(s), s == {payload!r})"
    assert server.run(code).text() == f"{len(payload)} True\n"


def test_at_capacity_answers_429_with_retry_after(make_server):
    server = make_server(workers=2, max_sessions=2)
    first, second = server.create("print(1)"), server.create("print(2)")
    refused = server.post("print(3)")
    assert error(refused) == (429, "at_capacity")
    assert int(refused.headers["Retry-After"]) >= 1
    requests.delete(f"{server.url}/session/{first}", timeout=10)
    assert server.post("print(4)").status_code == 201
    requests.delete(f"{server.url}/session/{second}", timeout=10)


def test_a_dead_daemon_is_said_in_words_without_python_exception_text(make_server, tmp_path):
    # Issue 10: a 503 said "('Connection aborted.', FileNotFoundError(2, ...))".
    server = make_server(workers=1, docker_host=f"unix://{tmp_path}/no-such-docker.sock", ready=False)
    for response in (
        requests.post(f"{server.url}/session", json={"language": "python", "code": "print(1)"}, timeout=30),
        requests.get(f"{server.url}/readyz", timeout=30),
    ):
        assert response.status_code == 503
        message = response.json()["error"]["message"]
        assert "Docker does not answer" in message
        assert not any(word in message for word in ("Error(", "Errno", "('", "Traceback")), message


def test_the_description_its_page_and_the_ides_files_with_their_headers(server):
    """Served by gunicorn as they are documented (every answer here is held against the document
    by conftest), each with the security headers."""
    document = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    assert document == described.description().document
    assert {"/session", "/run", "/api/v2/execute", "/judge0/submissions", "/openapi.json"} <= set(
        document["paths"]
    )
    chunk = sorted(
        name for name in os.listdir(os.path.join(ROOT, "static", "dist", "chunks")) if name.endswith(".js")
    )[0]
    for path in ("/", "/docs", "/static/dist/ide.js?v=1", f"/static/dist/chunks/{chunk}", "/openapi.json"):
        response = requests.get(f"{server.url}{path}", timeout=10)
        assert response.status_code == 200, path
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
