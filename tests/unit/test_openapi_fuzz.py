"""Schemathesis over the OpenAPI document, in WSGI mode against the app itself (the fake executor
for sandboxes, the fake batch runner for runs), with an API key of every scope: every route gets
generated requests, valid and not, and no answer may be a 500 or outside the document (status,
content type, headers, body). Bounded: a few examples per route, well under a minute."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest
import schemathesis
from fakes import FakeExecutor, FakeRunner
from flask import Flask
from hypothesis import HealthCheck, settings

from sandbox_engine import create_app
from sandbox_engine.config import Config
from sandbox_engine.keys import KeyStore, Scope
from sandbox_engine.openapi import document
from sandbox_engine.worker import EXTENSION

pytestmark = pytest.mark.slow

# Per route (and per phase: examples, valid and invalid data): a few hundred requests in all.
EXAMPLES = 15
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]


@pytest.fixture
def config(tmp_path) -> Config:
    return Config(state_dir=str(tmp_path / "state"), max_sessions=4, max_code_size=4096)


@pytest.fixture
def app(config: Config, executor: FakeExecutor) -> Iterator[Flask]:
    app = create_app(config, executor=executor)
    app.config["TESTING"] = True
    app.extensions[EXTENSION].runs = FakeRunner(versions={"python": "3.11.2"})
    yield app
    app.extensions[EXTENSION].shutdown()


@pytest.fixture
def secret(config: Config) -> str:
    return KeyStore.for_config(config).create("fuzz", frozenset(Scope))


def described() -> dict:
    """The document, of an app that serves nothing: each test calls an app of its own (threads
    started by a test's requests are stopped by its end)."""
    with tempfile.TemporaryDirectory() as state:
        return document(create_app(Config(state_dir=state), executor=FakeExecutor()))


schema = schemathesis.openapi.from_dict(described())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_no_answer_is_a_500_or_outside_the_document(case, app: Flask, secret: str) -> None:
    case.call_and_validate(app=app, headers={"Authorization": f"Bearer {secret}"}, checks=CHECKS)
