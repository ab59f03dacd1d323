"""The OpenAPI document (/openapi.json) and /docs: valid OpenAPI 3.1, complete (every route, its
access, every error code), public; the WebSocket messages' schemas against the protocol's own
parser and encoders; and the security headers of every answer."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from fakes import FakeExecutor
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from sandbox_engine import create_app
from sandbox_engine.auth import ROUTES, Access
from sandbox_engine.batch import Stage, Status
from sandbox_engine.config import Config
from sandbox_engine.errors import Kind
from sandbox_engine.executor import Usage
from sandbox_engine.headers import API_POLICY
from sandbox_engine.keys import KeyStore, Scope
from sandbox_engine.openapi import document
from sandbox_engine.openapi_operations import WEBSOCKETS
from sandbox_engine.piston_answers import ConnectStages, execute_answer
from sandbox_engine.piston_protocol import Runtime
from sandbox_engine.protocol import ProtocolError, encode, parse_client_message, state_message
from sandbox_engine.replay import Gap, ReplayBuffer
from sandbox_engine.states import Reason, State
from sandbox_engine.worker import EXTENSION
from sandbox_engine.ws import is_detach


@pytest.fixture
def config(tmp_path) -> Config:
    return Config(state_dir=str(tmp_path / "state"))


@pytest.fixture
def app(config: Config, executor: FakeExecutor) -> Iterator[Flask]:
    app = create_app(config, executor=executor)
    app.config["TESTING"] = True
    yield app
    app.extensions[EXTENSION].shutdown()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def described(client: FlaskClient) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


def schema_of(described: dict, name: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": described["components"]}
    )


# --- the document ---------------------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1(described):
    assert described["openapi"] == "3.1.0"
    validate(described)


def test_every_route_and_method_is_described(app, described):
    for rule in app.url_map.iter_rules():
        if rule.endpoint in WEBSOCKETS:
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            operation = described["paths"][path][method.lower()]
            assert operation["operationId"] == rule.endpoint
            assert "500" in operation["responses"]


def test_a_route_missing_from_the_table_fails_the_build(app):
    app.add_url_rule("/secret", "secret.page", lambda: "")
    with pytest.raises(LookupError, match="/secret"):
        document(app)


def test_access_follows_auth_routes(described):
    for item in described["paths"].values():
        for operation in item.values():
            access = ROUTES[operation["operationId"]]
            statuses = set(operation["responses"])
            if access in (Access.OPEN, Access.CAPABILITY):
                assert operation["security"] == [], operation["operationId"]
                assert "401" not in statuses
                continue
            scopes = [str(access)] if isinstance(access, Scope) else []
            assert {"bearer": scopes} in operation["security"]
            assert {"401", "429"} <= statuses
            assert ("403" in statuses) == isinstance(access, Scope)
    judge0 = described["paths"]["/judge0/submissions"]["post"]["security"]
    assert {"judge0Token": ["run"]} in judge0
    piston = described["paths"]["/api/v2/execute"]["post"]["security"]
    assert {"pistonKey": ["run"]} in piston


def test_error_codes_and_statuses_are_the_kinds(described):
    schemas = described["components"]["schemas"]
    codes = [kind.code for kind in Kind]
    assert schemas["ErrorCode"]["enum"] == codes
    assert schemas["Error"]["properties"]["error"]["properties"]["code"]["enum"] == codes
    table = schemas["ErrorCode"]["description"]
    for kind in Kind:
        assert f"| `{kind.code}` | {kind.http_status} | {kind.close_code} |" in table
    create = described["paths"]["/session"]["post"]["responses"]
    listed = create["400"]["content"]["application/json"]["schema"]["properties"]["error"]
    assert listed["properties"]["code"]["enum"] == ["invalid_json", "invalid_request", "unknown_language"]
    assert create["429"]["headers"]["Retry-After"]["required"] is True
    # A session's own 429s, not POST /session's: input past the limit, one watcher too many.
    theirs = (Kind.INPUT_LIMIT, Kind.TOO_MANY_WATCHERS)
    assert [k.code for k in Kind if k.http_status == 429 and k not in theirs] == sorted(
        create["429"]["content"]["application/json"]["schema"]["properties"]["error"]["properties"]["code"][
            "enum"
        ],
        key=codes.index,
    )


def test_enumerations_come_from_their_modules(described):
    schemas = described["components"]["schemas"]
    from sandbox_engine.languages import LANGUAGES

    assert schemas["Language"]["properties"]["id"]["enum"] == list(LANGUAGES)
    assert schemas["Session"]["properties"]["state"]["enum"] == list(State)
    assert schemas["FinalStateMessage"]["properties"]["reason"]["enum"] == list(Reason)


def test_the_description_and_its_page_are_public_on_a_server_with_keys(config, client):
    KeyStore.for_config(config).create("k", frozenset(Scope))
    assert client.get("/languages").status_code == 401
    assert client.get("/openapi.json").status_code == 200
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"


def test_the_docs_page_loads_swagger_ui_from_the_bundle(client, app, tmp_path):
    page = client.get("/docs").get_data(as_text=True)
    app.static_folder = str(tmp_path / "static")
    missing = client.get("/docs").get_data(as_text=True)
    assert "bundle is missing" in missing and 'href="/openapi.json"' in missing
    (tmp_path / "static" / "dist").mkdir(parents=True)
    for name in ("docs.js", "docs.css"):
        (tmp_path / "static" / "dist" / name).write_text("")
    page = client.get("/docs").get_data(as_text=True)
    assert re.search(r'<script type="module" src="/static/dist/docs\.js\?v=\d+"></script>', page)
    assert 'data-url="/openapi.json"' in page and "http" not in page.replace("http-equiv", "")


# --- the WebSocket messages -----------------------------------------------------------------------

CLIENT_MESSAGES = [
    {"type": "input", "data": "hello\n"},
    {"type": "input", "data": ""},
    {"type": "eof"},
    {"type": "kill", "why": "bored"},
    {"type": "signal", "signal": "SIGINT"},
    {"type": "resize", "cols": 100, "rows": 30},
    {"type": "resize", "cols": 100.0, "rows": 30},
    {"type": "resize", "cols": 0, "rows": 30},
    {"type": "resize", "cols": 1001, "rows": 30},
    {"type": "resize", "cols": True, "rows": 30},
    {"type": "resize", "cols": 80},
    {"type": "signal", "signal": "SIGSTOP"},
    {"type": "input"},
    {"type": "input", "data": 5},
    {"type": "launch"},
    {"data": "x"},
]


@pytest.mark.parametrize("message", CLIENT_MESSAGES, ids=json.dumps)
def test_the_client_schema_takes_what_the_server_takes(described, message):
    try:
        parse_client_message(json.dumps(message))
        taken = True
    except ProtocolError:
        taken = False
    assert schema_of(described, "SessionClientMessage").is_valid(message) == taken


def test_every_server_message_fits_its_schema(described):
    server = schema_of(described, "SessionServerMessage")
    messages = [
        state_message(State.COMPILING),
        state_message(State.RUNNING),
        {"type": "stdout", "data": "hi"},
        {"type": "stderr", "data": "oops"},
        {"type": "error", "message": "unknown message type 'x'"},
    ]
    for reason in Reason:
        messages.append(state_message(reason.state, 0, reason, Usage(1.5, 2.0, 4096)))
        messages.append(state_message(reason.state, None, reason))
        messages.append(state_message(reason.state, 137, reason))
    # Numbered as every client receives them; an error answers one client and has no number.
    replay = ReplayBuffer(1 << 20)
    sent = [json.loads(replay.append(m) if m["type"] != "error" else encode(m)) for m in messages]
    sent.append(Gap(1, 3).message())
    for message in sent:
        assert server.is_valid(message), (message, [e.message for e in server.iter_errors(message)])
    assert not server.is_valid({"type": "state", "state": "FINISHED", "seq": 9})
    assert not server.is_valid({"type": "stdout", "seq": 2})
    assert not server.is_valid({"type": "stdout", "data": "no seq"})


def test_detach_is_a_client_message_of_the_document(described):
    assert is_detach(json.dumps({"type": "detach"}))
    assert schema_of(described, "SessionClientMessage").is_valid({"type": "detach"})


def test_pistons_connect_messages_fit_their_schemas(described):
    server = schema_of(described, "PistonConnectServerMessage")
    stages = ConnectStages()
    ours = [
        state_message(State.COMPILING),
        {"type": "stderr", "data": "warning"},
        state_message(State.RUNNING),
        {"type": "stdout", "data": "hi"},
        state_message(State.TERMINATED, 130, Reason.KILLED),
    ]
    translated = [m for message in ours for m in stages.translate(message)]
    translated.append({"type": "runtime", "language": "python", "version": "3.11.2"})
    translated.append({"type": "error", "message": "x"})
    for message in translated:
        assert server.is_valid(message), message
    client = schema_of(described, "PistonConnectClientMessage")
    assert client.is_valid({"type": "init", "language": "py", "version": "*", "files": [{"content": "x"}]})
    assert client.is_valid({"type": "data", "stream": "stdin", "data": "x\n"})
    assert not client.is_valid({"type": "data", "stream": "stdout", "data": "x\n"})


def test_pistons_execute_answer_fits_its_schema(described):
    answer = schema_of(described, "PistonExecuteAnswer")
    runtime = Runtime("python", "python", "3.11.2")
    from sandbox_engine.batch import RunResult

    for stage in (
        Stage(Status.OK, 0, stdout=b"hi", output=b"hi", usage=Usage(1.0, 2.0, 3)),
        Stage(Status.RUNTIME_ERROR, None, "SIGSEGV"),
        Stage(Status.TIMEOUT),
        Stage(Status.OUTPUT_LIMIT, truncated_stdout=True),
        Stage(Status.INTERNAL_ERROR, message="gone"),
    ):
        result = RunResult("python", "3.11.2", compile=stage, run=stage)
        assert answer.is_valid(execute_answer(result, runtime))


# --- security headers -----------------------------------------------------------------------------


def test_every_answer_has_the_security_headers(client):
    for url in ("/", "/docs", "/openapi.json", "/languages", "/session/nope", "/nowhere", "/api/v2/x"):
        headers = client.get(url).headers
        assert headers["X-Content-Type-Options"] == "nosniff", url
        assert headers["Referrer-Policy"] == "no-referrer", url
        assert headers["X-Frame-Options"] == "DENY", url
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], url
    assert client.get("/languages").headers["Content-Security-Policy"] == API_POLICY


def test_the_ide_page_allows_only_its_own_scripts_and_styles_by_a_fresh_nonce(client):
    nonces = []
    for _ in range(2):
        response = client.get("/")
        policy = response.headers["Content-Security-Policy"]
        nonce = re.search(r"script-src 'self' 'nonce-([\w-]+)'", policy).group(1)
        assert f"style-src 'self' 'nonce-{nonce}'" in policy
        assert "unsafe" not in policy and "connect-src 'self'" in policy
        page = response.get_data(as_text=True)
        # Every script and style element of the page carries it.
        assert page.count("<script") == page.count(f'<script nonce="{nonce}"') + page.count(
            f'<script type="module" nonce="{nonce}"'
        )
        assert response.headers["Cache-Control"] == "no-store"
        nonces.append(nonce)
    assert nonces[0] != nonces[1]


def test_the_docs_page_runs_no_inline_code(client):
    policy = client.get("/docs").headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "style-src 'self';" in policy and "unsafe" not in policy
