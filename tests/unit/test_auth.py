"""API keys over HTTP: every route family against no key, a wrong key, a key without the route's
scope and one with it; each API's own error shape; ownership, quotas and rates as a client sees
them. Over a fake executor and a fake batch runner."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fakes import FakeExecutor, FakeRunner
from flask import Flask
from flask.testing import FlaskClient

from sandbox_engine import create_app
from sandbox_engine.auth import ROUTES, Access
from sandbox_engine.config import Config
from sandbox_engine.keys import KeyStore, Scope
from sandbox_engine.worker import EXTENSION

CODE = "print('hello')\n"
UNKNOWN = str(uuid.uuid4())
SESSION = {"language": "python", "code": CODE}
PISTON_JOB = {"language": "python", "version": "*", "files": [{"content": CODE}]}
SUBMISSION = {"language_id": 71, "source_code": CODE}


@pytest.fixture
def config(tmp_path) -> Config:
    return Config(state_dir=str(tmp_path / "state"), max_sessions=10)


@pytest.fixture
def runner() -> FakeRunner:
    return FakeRunner(versions={"python": "3.11.2"})


@pytest.fixture
def app(config: Config, executor: FakeExecutor, runner: FakeRunner) -> Iterator[Flask]:
    app = create_app(config, executor=executor)
    app.config["TESTING"] = True
    app.extensions[EXTENSION].runs = runner
    yield app
    app.extensions[EXTENSION].shutdown()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def keys(config: Config) -> KeyStore:
    return KeyStore.for_config(config)


@pytest.fixture
def secrets(keys: KeyStore) -> dict[str, str]:
    """A key per scope, one with them all, as the CLI makes them."""
    return {
        "session": keys.create("s", frozenset({Scope.SESSION})),
        "run": keys.create("r", frozenset({Scope.RUN})),
        "admin": keys.create("a", frozenset({Scope.ADMIN})),
        "all": keys.create("everything", frozenset(Scope)),
    }


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


# --- the table ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    # What the route needs: a scope, or any valid key.
    needs: Scope | Access
    # How its errors look: "ours" (the envelope), "piston" ({"message"}), "judge0" ({"error"}).
    shape: str
    # Its status once past the keys (the request itself may still be refused: a 404, a 426).
    passed: int
    body: dict | None = None

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


ROUTE_TABLE = [
    Route("POST", "/session", Scope.SESSION, "ours", 201, SESSION),
    Route("GET", f"/session/{UNKNOWN}", Scope.SESSION, "ours", 404),
    Route("DELETE", f"/session/{UNKNOWN}", Scope.SESSION, "ours", 404),
    Route("POST", f"/session/{UNKNOWN}/watchers", Scope.SESSION, "ours", 404),
    Route("DELETE", f"/session/{UNKNOWN}/watchers", Scope.SESSION, "ours", 404),
    Route("GET", "/languages", Access.ANY, "ours", 200),
    Route("GET", "/pool", Scope.ADMIN, "ours", 200),
    Route("GET", "/metrics", Scope.ADMIN, "ours", 200),
    Route("POST", "/run", Scope.RUN, "ours", 200, SESSION),
    Route("GET", f"/run/{UNKNOWN}", Scope.RUN, "ours", 404),
    Route("GET", "/api/v2/runtimes", Access.ANY, "piston", 200),
    Route("POST", "/api/v2/execute", Scope.RUN, "piston", 200, PISTON_JOB),
    Route("GET", "/api/v2/connect", Scope.SESSION, "piston", 426),
    Route("POST", "/judge0/submissions", Scope.RUN, "judge0", 201, SUBMISSION),
    Route("GET", f"/judge0/submissions/{UNKNOWN}", Scope.RUN, "judge0", 404),
    Route("GET", f"/judge0/submissions/batch?tokens={UNKNOWN}", Scope.RUN, "judge0", 200),
    Route("POST", "/judge0/submissions/batch", Scope.RUN, "judge0", 201, {"submissions": [SUBMISSION]}),
    Route("DELETE", f"/judge0/submissions/{UNKNOWN}", Scope.RUN, "judge0", 400),
    Route("GET", "/judge0/languages", Access.ANY, "judge0", 200),
    Route("GET", "/judge0/languages/all", Access.ANY, "judge0", 200),
    Route("GET", "/judge0/languages/71", Access.ANY, "judge0", 200),
    Route("GET", "/judge0/version", Access.ANY, "judge0", 200),
    Route("GET", "/judge0/statuses", Access.ANY, "judge0", 200),
    Route("GET", "/judge0/about", Access.ANY, "judge0", 200),
    Route("GET", "/judge0/config_info", Access.ANY, "judge0", 200),
    # No route: the key is checked first, then the path is not found, in the prefix's shape.
    Route("GET", "/nowhere", Access.ANY, "ours", 404),
    Route("GET", "/api/v2/nowhere", Access.ANY, "piston", 404),
    Route("GET", "/judge0/nowhere", Access.ANY, "judge0", 404),
]
CASES = ["no key", "wrong key", "wrong scope", "right scope"]


def call(client: FlaskClient, route: Route, headers: dict[str, str]):
    return client.open(route.path, method=route.method, json=route.body, headers=headers)


def message_of(response, shape: str, code: str) -> str:
    """The error's words, after checking the body is exactly the API's own error shape."""
    body = response.get_json()
    if shape == "ours":
        assert list(body) == ["error"] and sorted(body["error"]) == ["code", "message"], body
        assert body["error"]["code"] == code
        return body["error"]["message"]
    key = "message" if shape == "piston" else "error"
    assert list(body) == [key] and isinstance(body[key], str), body
    return body[key]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("route", ROUTE_TABLE, ids=str)
def test_every_route_family_checks_the_key_and_its_scope(client, secrets, route: Route, case: str):
    if case == "no key":
        response = call(client, route, {})
        assert response.status_code == 401, response.get_data(as_text=True)
        assert response.headers["WWW-Authenticate"] == "Bearer"
        words = message_of(response, route.shape, "unauthorized")
        assert "Authorization: Bearer" in words
    elif case == "wrong key":
        response = call(client, route, bearer(secrets["all"][:-2] + "xx"))
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        assert "not valid" in message_of(response, route.shape, "unauthorized")
    elif case == "wrong scope":
        if route.needs is Access.ANY:
            # Any valid key passes, whatever its scopes.
            for scope in ("session", "run", "admin"):
                assert call(client, route, bearer(secrets[scope])).status_code == route.passed
            return
        other = next(s for s in ("session", "run", "admin") if s != route.needs)
        response = call(client, route, bearer(secrets[other]))
        assert response.status_code == 403, response.get_data(as_text=True)
        assert (
            response.headers["WWW-Authenticate"]
            == f'Bearer error="insufficient_scope", scope="{route.needs}"'
        )
        assert f"needs the {route.needs} scope" in message_of(response, route.shape, "forbidden")
    else:
        name = "all" if route.needs is Access.ANY else str(route.needs)
        response = call(client, route, bearer(secrets[name]))
        assert response.status_code == route.passed, response.get_data(as_text=True)


def test_the_table_names_every_route(app):
    """A new route must be placed in auth.ROUTES; one that is not needs the admin scope."""
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert endpoints <= set(ROUTES), sorted(endpoints - set(ROUTES))
    tested = {(r.method, r.path.split("?")[0]) for r in ROUTE_TABLE}
    for rule in app.url_map.iter_rules():
        if ROUTES[rule.endpoint] in (Access.OPEN, Access.CAPABILITY):
            continue
        path = rule.rule.replace("<session_id>", UNKNOWN).replace("<run_id>", UNKNOWN)
        path = path.replace("<token>", UNKNOWN).replace("<language_id>", "71")
        methods = (rule.methods or set()) - {"HEAD", "OPTIONS"}
        if rule.endpoint == "piston_ws.connect":
            continue  # the WebSocket shares its path with the plain GET's route
        assert {(m, path) for m in methods} <= tested, rule


def test_a_route_missing_from_the_table_needs_the_admin_scope(app, client, secrets):
    @app.get("/unlisted")
    def unlisted():
        return {"ok": True}

    assert client.get("/unlisted", headers=bearer(secrets["run"])).status_code == 403
    assert client.get("/unlisted", headers=bearer(secrets["admin"])).status_code == 200


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/", "/static/dist/ide.js", "/static/src/ide.js", "/static/src/nothing"]
)
def test_health_readiness_and_the_ides_files_need_no_key(client, secrets, path):
    response = client.get(path)
    assert response.status_code in (200, 404), path  # a missing file is 404, never 401
    assert response.status_code != 401


def test_a_sessions_websocket_is_reached_by_its_id_without_a_key(client, secrets):
    created = client.post("/session", json=SESSION, headers=bearer(secrets["session"]))
    session_id = created.get_json()["sessionId"]
    # A plain GET passes the keys and the session's checks, and asks for the upgrade.
    response = client.get(f"/ws/session/{session_id}")
    assert response.status_code == 426
    assert client.get(f"/ws/session/{UNKNOWN}").status_code == 404


def test_judge0s_routes_take_x_auth_token(client, secrets):
    response = client.post("/judge0/submissions", json=SUBMISSION, headers={"X-Auth-Token": secrets["run"]})
    assert response.status_code == 201
    token = response.get_json()["token"]
    assert (
        client.get(f"/judge0/submissions/{token}", headers={"X-Auth-Token": secrets["run"]}).status_code
        == 200
    )
    wrong = client.get("/judge0/about", headers={"X-Auth-Token": "se_nope"})
    assert wrong.status_code == 401 and wrong.get_json() == {"error": wrong.get_json()["error"]}
    # Elsewhere it is not a key.
    assert client.get("/languages", headers={"X-Auth-Token": secrets["run"]}).status_code == 401
    missing = client.get("/judge0/about")
    assert "X-Auth-Token" in missing.get_json()["error"]


def test_pistons_routes_take_the_bare_key_as_pistons_clients_send_it(client, secrets):
    response = client.post("/api/v2/execute", json=PISTON_JOB, headers={"Authorization": secrets["run"]})
    assert response.status_code == 200, response.get_json()
    # Not on our own routes, and never anything but a key.
    assert client.get("/languages", headers={"Authorization": secrets["run"]}).status_code == 401
    assert client.get("/api/v2/runtimes", headers={"Authorization": "Basic dXNlcjpwYXNz"}).status_code == 401
    assert client.get("/api/v2/runtimes", headers={"Authorization": "se_nope"}).status_code == 401


def test_the_bearer_scheme_is_case_insensitive(client, secrets):
    assert client.get("/languages", headers={"Authorization": f"bearer {secrets['run']}"}).status_code == 200
    assert (
        client.get("/languages", headers={"Authorization": f"BEARER  {secrets['run']} "}).status_code == 200
    )


# --- without keys, and with --auth required --------------------------------------------------------


def test_without_any_key_the_server_is_open_as_before(client, keys):
    assert client.post("/session", json=SESSION).status_code == 201
    assert client.get("/pool").status_code == 200
    assert client.post("/judge0/submissions", json=SUBMISSION).status_code == 201
    # A key presented to an open server is not looked at.
    assert client.get("/languages", headers=bearer("se_whatever")).status_code == 200


def test_the_first_key_closes_the_server_and_the_last_revoke_opens_it(app, client, keys):
    assert client.get("/languages").status_code == 200
    secret = keys.create("first")
    store = app.extensions["sandbox_engine.auth"].keys
    store.reload()  # the worker's next look, without waiting half a second
    assert client.get("/languages").status_code == 401
    assert client.get("/languages", headers=bearer(secret)).status_code == 200
    keys.revoke("first")
    store.reload()
    assert client.get("/languages", headers=bearer(secret)).status_code == 200  # open again
    assert client.get("/languages").status_code == 200


def test_auth_required_refuses_every_request_before_the_first_key(tmp_path, executor):
    config = Config(state_dir=str(tmp_path / "state"), auth="required")
    app = create_app(config, executor=executor)
    try:
        client = app.test_client()
        assert client.get("/languages").status_code == 401
        assert client.get("/healthz").status_code == 200
        secret = KeyStore.for_config(config).create("k")
        app.extensions["sandbox_engine.auth"].keys.reload()
        assert client.get("/languages", headers=bearer(secret)).status_code == 200
    finally:
        app.extensions[EXTENSION].shutdown()


def test_config_refuses_an_unknown_auth_mode():
    with pytest.raises(ValueError, match="auth"):
        Config(auth="sometimes").validate()
    assert Config.from_env({"SANDBOX_ENGINE_AUTH": "required"}).auth == "required"
    assert Config.from_env({"SANDBOX_ENGINE_KEYS_FILE": "/etc/k.json"}).keys_file == "/etc/k.json"


# --- ownership ------------------------------------------------------------------------------------


def test_a_session_is_the_keys_that_made_it(client, keys):
    alice = bearer(keys.create("alice"))
    bob = bearer(keys.create("bob"))
    session_id = client.post("/session", json=SESSION, headers=alice).get_json()["sessionId"]
    assert client.get(f"/session/{session_id}", headers=alice).status_code == 200
    for method in ("GET", "DELETE"):
        response = client.open(f"/session/{session_id}", method=method, headers=bob)
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "not_found"
    assert client.get(f"/session/{session_id}", headers=alice).get_json()["state"] == "CREATED"
    assert client.delete(f"/session/{session_id}", headers=alice).status_code == 204


def test_a_run_is_the_keys_that_made_it_in_every_api(client, keys, runner):
    alice = bearer(keys.create("alice"))
    bob = bearer(keys.create("bob"))
    run_id = client.post("/run", json={**SESSION, "wait": False}, headers=alice).get_json()["runId"]
    assert client.get(f"/run/{run_id}", headers=alice).status_code == 200
    assert client.get(f"/run/{run_id}", headers=bob).status_code == 404
    token = client.post("/judge0/submissions", json=SUBMISSION, headers=alice).get_json()["token"]
    assert client.get(f"/judge0/submissions/{token}", headers=alice).status_code == 200
    other = client.get(f"/judge0/submissions/{token}", headers=bob)
    assert other.status_code == 404 and other.get_json() == {"status": 404, "error": "Not Found"}
    batch = client.get(f"/judge0/submissions/batch?tokens={token}", headers=bob).get_json()
    assert batch == {"submissions": [None]}
    # The runner was told whose each request was.
    client.post("/api/v2/execute", json=PISTON_JOB, headers=bob)
    assert [k.name for k in runner.keys] == ["alice", "alice", "bob"]


# --- quotas and rates -----------------------------------------------------------------------------


def test_a_keys_session_limit_is_429_quota_exceeded_with_retry_after(client, keys):
    alice = bearer(keys.create("alice", max_sessions=1))
    bob = bearer(keys.create("bob"))
    assert client.post("/session", json=SESSION, headers=alice).status_code == 201
    response = client.post("/session", json=SESSION, headers=alice)
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert "'alice'" in message_of(response, "ours", "quota_exceeded")
    # Another key is not held back.
    assert client.post("/session", json=SESSION, headers=bob).status_code == 201


def test_a_quota_refusal_in_pistons_and_judge0s_shapes(client, keys, runner):
    from sandbox_engine.errors import EngineError, Kind

    secret = bearer(keys.create("alice", max_sessions=1))
    runner.error = EngineError(Kind.QUOTA_EXCEEDED, "key 'alice' is at its limit", retry_after=5)
    piston = client.post("/api/v2/execute", json=PISTON_JOB, headers=secret)
    assert (piston.status_code, piston.headers["Retry-After"]) == (429, "5")
    assert piston.get_json() == {"message": "key 'alice' is at its limit"}
    judge0 = client.post("/judge0/submissions", json=SUBMISSION, headers=secret)
    assert (judge0.status_code, judge0.headers["Retry-After"]) == (429, "5")
    assert judge0.get_json() == {"error": "key 'alice' is at its limit"}


@pytest.mark.parametrize(
    ("path", "shape"), [("/languages", "ours"), ("/api/v2/runtimes", "piston"), ("/judge0/about", "judge0")]
)
def test_a_keys_rate_is_429_rate_limited_with_retry_after(client, keys, path, shape):
    secret = bearer(keys.create("alice", rate=3))
    free = bearer(keys.create("bob"))
    for _ in range(3):
        assert client.get(path, headers=secret).status_code == 200
    response = client.get(path, headers=secret)
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert "3 requests a minute" in message_of(response, shape, "rate_limited")
    # Each key its own rate; a key without one has none.
    for _ in range(10):
        assert client.get(path, headers=free).status_code == 200


def test_refused_requests_do_not_count_against_the_rate(client, keys):
    secret = bearer(keys.create("alice", frozenset({Scope.SESSION}), rate=2))
    for _ in range(5):
        assert client.get("/pool", headers=secret).status_code == 403
    assert client.get("/languages", headers=secret).status_code == 200
    assert client.get("/languages", headers=secret).status_code == 200
    assert client.get("/languages", headers=secret).status_code == 429
    assert client.get("/languages", headers=secret).status_code == 429
