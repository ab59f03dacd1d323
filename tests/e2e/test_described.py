"""The end-to-end suite's check against the OpenAPI document (described) catches what it must:
a body, a status or a content type the document does not give, and passes the server's files."""

from __future__ import annotations

import json

import pytest
from described import Description, Exchange
from fakes import FakeExecutor

from sandbox_engine import create_app
from sandbox_engine.config import Config
from sandbox_engine.openapi import document

URL = "http://127.0.0.1:8080"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def description(tmp_path_factory) -> Description:
    state = tmp_path_factory.mktemp("state")
    return Description(document(create_app(Config(state_dir=str(state)), executor=FakeExecutor())))


def answer(
    path: str, status: int, body: object, method: str = "GET", headers: dict | None = None
) -> Exchange:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Exchange(method, URL + path, {}, status, headers or JSON, data)


def test_what_the_document_gives_passes(description):
    description.check(answer("/healthz", 200, {"status": "ok"}))
    description.check(
        answer("/session/x", 404, {"error": {"code": "not_found", "message": "no session 'x'"}})
    )
    description.check(
        answer("/static/dist/chunks/go-AB12.js?v=1", 200, b"x", headers={"Content-Type": "text/javascript"})
    )
    description.check(answer("/nowhere", 404, {"error": {"code": "not_found", "message": "no"}}))
    description.check(answer("/judge0/nowhere", 404, {"status": 404, "error": "Not Found"}))
    description.check(answer("/healthz", 200, b"", method="HEAD"))


@pytest.mark.parametrize(
    "exchange",
    [
        answer("/healthz", 200, {"status": "ok", "extra": 1}),
        answer("/session/x", 404, {"error": {"code": "invalid_json", "message": "wrong code"}}),
        answer("/session/x", 418, {"error": {"code": "not_found", "message": "no"}}),
        answer("/session/x", 200, {"sessionId": "x"}),
        answer("/healthz", 200, b"ok", headers={"Content-Type": "text/plain"}),
        answer("/api/v2/execute", 400, {"error": {"code": "x", "message": "not Piston's shape"}}, "POST"),
        answer("/nowhere", 200, {"status": "ok"}),
    ],
    ids=str,
)
def test_what_it_does_not_give_fails(description, exchange):
    with pytest.raises(AssertionError):
        description.check(exchange)


def test_messages_are_held_against_their_schemas(description):
    description.check_message("SessionServerMessage", {"type": "stdout", "data": "hi", "seq": 1})
    with pytest.raises(AssertionError, match="not a SessionServerMessage"):
        description.check_message("SessionServerMessage", {"type": "stdout", "seq": 2})
