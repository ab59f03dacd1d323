"""Watch links over HTTP, over a fake executor: making and revoking them, the refusals of the
watch WebSocket before any upgrade, the page a link opens, and the tokens themselves."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from fakes import FakeClient, FakeExecutor
from flask import Flask
from flask.testing import FlaskClient

from sandbox_engine import create_app, watch_tokens
from sandbox_engine.config import Config
from sandbox_engine.engine import Engine
from sandbox_engine.records import RecordStore
from sandbox_engine.worker import EXTENSION

# A browser's opening handshake (as test_api's): refusals answer it with JSON, not with 101.
HANDSHAKE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


@pytest.fixture
def app(tmp_path, executor: FakeExecutor) -> Iterator[Flask]:
    app = create_app(Config(state_dir=str(tmp_path / "state"), max_watchers=1), executor=executor)
    app.config["TESTING"] = True
    yield app
    app.extensions[EXTENSION].shutdown()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def engine_of(app: Flask) -> Engine:
    return app.extensions[EXTENSION].engine


def create(client: FlaskClient) -> str:
    response = client.post("/session", json={"language": "python", "code": "print(1)"})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["sessionId"]


def error_of(response, status: int, code: str) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert list(body) == ["error"] and body["error"]["code"] == code, body
    return body["error"]["message"]


def share(client: FlaskClient, session_id: str) -> dict:
    response = client.post(f"/session/{session_id}/watchers")
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def watch(client: FlaskClient, session_id: str, token: str, start: str = "start"):
    return client.get(f"/ws/session/{session_id}/watch?token={token}&from={start}", headers=HANDSHAKE)


def test_a_link_is_the_watch_page_with_its_token(client):
    session_id = create(client)
    link = share(client, session_id)
    assert set(link) == {"watchToken", "url"}
    assert link["url"] == f"http://localhost/watch/{session_id}?token={link['watchToken']}"
    page = client.get(link["url"])
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "nonce-" in page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "no-referrer"  # the token stays out of Referer
    assert share(client, session_id)["watchToken"] != link["watchToken"]


def test_links_of_an_unknown_session_are_404(client):
    error_of(client.post(f"/session/{uuid.uuid4()}/watchers"), 404, "not_found")
    error_of(client.delete(f"/session/{uuid.uuid4()}/watchers"), 404, "not_found")


def test_the_watch_socket_refuses_before_any_upgrade(app, client):
    session_id = create(client)
    token = share(client, session_id)["watchToken"]
    error_of(watch(client, str(uuid.uuid4()), token), 404, "not_found")
    error_of(watch(client, session_id, "nonce.0000"), 403, "invalid_token")
    error_of(watch(client, session_id, token, "yesterday"), 400, "invalid_request")
    # Nobody attached yet: nothing to follow.
    error_of(watch(client, session_id, token), 409, "not_started")
    engine_of(app).attach(session_id, FakeClient())
    hub = engine_of(app).hubs.get(session_id)
    watcher = hub.watch(FakeClient())
    error_of(watch(client, session_id, token), 429, "too_many_watchers")
    hub.unwatch(watcher)
    assert "WebSocket" in error_of(
        client.get(f"/ws/session/{session_id}/watch?token={token}"), 426, "upgrade_required"
    )
    # Revoked: every token of the session, and the watchers attached are closed.
    closed = FakeClient()
    hub.watch(closed)
    assert client.delete(f"/session/{session_id}/watchers").status_code == 204
    error_of(watch(client, session_id, token), 403, "invalid_token")
    assert closed.closed.wait(5) and closed.close_codes == [4403]


def test_tokens_hold_for_their_session_only_until_revoked(tmp_path):
    directory = str(tmp_path)
    store = RecordStore(directory)
    one, other = str(uuid.uuid4()), str(uuid.uuid4())
    token = watch_tokens.mint(store, one)
    assert watch_tokens.valid(store, one, token)
    assert not watch_tokens.valid(store, other, token)
    assert not watch_tokens.valid(store, one, token[:-1] + ("0" if token[-1] != "0" else "1"))
    assert not watch_tokens.valid(store, one, "")
    assert oct(os.stat(os.path.join(directory, one + ".watch")).st_mode & 0o777) == "0o600"
    watch_tokens.revoke(store, one)
    assert not watch_tokens.valid(store, one, token)
    again = watch_tokens.mint(store, one)
    assert watch_tokens.valid(store, one, again) and not watch_tokens.valid(store, one, token)
    assert [name for name in os.listdir(directory) if name.startswith(".tmp-")] == []
