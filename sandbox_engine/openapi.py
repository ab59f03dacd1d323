"""The OpenAPI 3.1 document of a server, built from the app itself: its routes (paths, methods,
path parameters) from Flask's URL map, each route's access from auth.ROUTES, each error's code
and status from errors.Kind, the bodies from openapi_schemas and openapi_compat, what each route
does from openapi_operations. A route missing from the table fails the build (and a unit test),
so the document cannot fall behind the server.
"""

from __future__ import annotations

import re
from importlib import metadata

from flask import Flask

from .auth import JUDGE0_PREFIX, PISTON_PREFIX, ROUTES, Access
from .errors import Kind
from .keys import Scope
from .openapi_compat import JUDGE0_SCHEMAS, PISTON_SCHEMAS
from .openapi_operations import OPERATIONS, WEBSOCKETS, Operation
from .openapi_schemas import SCHEMAS, error_schema, ref

# What each error code means, for the table in the document (one line each).
MEANINGS = {
    Kind.INVALID_JSON: "the body (or a message) is not valid JSON",
    Kind.INVALID_REQUEST: "a field is missing, unknown or of the wrong type; the message names it",
    Kind.UNKNOWN_LANGUAGE: "the language is not one of GET /languages",
    Kind.UNAUTHORIZED: "no API key, or one the server does not know",
    Kind.FORBIDDEN: "a key without the route's scope, or a browser page of another origin",
    Kind.NOT_FOUND: "no such session, run or file (another key's are not found either)",
    Kind.METHOD_NOT_ALLOWED: "the path does not take this method",
    Kind.ALREADY_ATTACHED: "a client is attached to the session already",
    Kind.TAKEN_OVER: "(WebSocket only) another client resumed the session with takeover=1",
    Kind.SESSION_ENDED: "the session is over",
    Kind.INVALID_TOKEN: "a watch link's token, wrong or revoked (4403 also closes watchers when revoked)",
    Kind.NOT_STARTED: "no client has attached to the session yet: nothing to watch",
    Kind.TOO_MANY_WATCHERS: "the session has --max-watchers watchers already",
    Kind.TOO_LARGE: "the body or the code is over the server's limit",
    Kind.UNSUPPORTED_MEDIA_TYPE: "the body is not sent as application/json",
    Kind.UPGRADE_REQUIRED: "a plain GET of a WebSocket's URL",
    Kind.AT_CAPACITY: "the server runs --max-sessions sessions and runs; Retry-After says when to retry",
    Kind.QUOTA_EXCEEDED: "the key runs as many sessions and runs as it may; Retry-After",
    Kind.RATE_LIMITED: "the key is over its requests a minute; Retry-After",
    Kind.INPUT_LIMIT: "(WebSocket only) input faster than the program reads it, past the limit",
    Kind.RUNTIME_UNAVAILABLE: "Docker does not answer, or a language's image is missing",
    Kind.INTERNAL: "a failure of the server's own",
}
RETRY_AFTER = {"description": "seconds to wait", "schema": {"type": "integer"}, "required": True}
AUTHENTICATE = {"description": "the scheme, and why the key was refused", "schema": {"type": "string"}}
_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
PARAMETERS = {
    "session_id": "a session's id, from POST /session",
    "run_id": "a run's id, from POST /run",
    "token": "a submission's token",
    "language_id": "a Judge0 language id",
    # Flask's path converter: OpenAPI has no parameter that spans segments.
    "filename": "a path under the folder; its slashes are the route's own (chunks/a.js)",
}


def document(app: Flask) -> dict:
    """The OpenAPI 3.1 description of every route of `app`."""
    paths: dict[str, dict] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint in WEBSOCKETS:
            continue  # described by the plain GET of the same path
        try:
            operation = OPERATIONS[rule.endpoint]
        except KeyError:
            raise LookupError(
                f"route {rule.rule} ({rule.endpoint}) is not described in openapi_operations"
            ) from None
        path = _CONVERTER.sub(r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(rule.endpoint, path, operation)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sandbox-engine",
            "version": _version(),
            "summary": "Run untrusted programs in hardened containers: sessions over WebSockets, batch runs, "
            "and Piston's and Judge0's APIs.",
            "description": DESCRIPTION,
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": name, "description": words} for name, words in TAGS.items()],
        "paths": paths,
        "components": {
            "schemas": {
                "Error": error_schema([kind.code for kind in Kind]),
                "ErrorCode": {"type": "string", "enum": [k.code for k in Kind], "description": error_table()},
                **SCHEMAS,
                **PISTON_SCHEMAS,
                **JUDGE0_SCHEMAS,
            },
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def _version() -> str:
    try:
        return metadata.version("sandbox-engine")
    except metadata.PackageNotFoundError:
        return "0"


def error_table() -> str:
    rows = ["| code | HTTP status | WebSocket close | when |", "| --- | --- | --- | --- |"]
    rows += [f"| `{k.code}` | {k.http_status} | {k.close_code} | {MEANINGS[k]} |" for k in Kind]
    return 'Every error of our API is `{"error": {"code", "message"}}`:\n\n' + "\n".join(rows)


def _operation(endpoint: str, path: str, operation: Operation) -> dict:
    access = ROUTES.get(endpoint, Scope.ADMIN)
    shape = (
        "judge0" if path.startswith(JUDGE0_PREFIX) else "piston" if path.startswith(PISTON_PREFIX) else "ours"
    )
    answers = dict(operation.answers)
    if shape == "ours":
        answers.update(_our_errors(operation.errors + _auth_kinds(access) + (Kind.INTERNAL,)))
    elif shape == "piston":
        statuses = operation.piston_errors + tuple(k.http_status for k in _auth_kinds(access)) + (500,)
        answers.update({s: _piston_error(s) for s in statuses if s not in answers})
    else:
        statuses = tuple(k.http_status for k in _auth_kinds(access)) + (500,)
        error = {"description": "refused", "content": {"application/json": {"schema": ref("Judge0Error")}}}
        answers.update({s: _with_headers(s, error) for s in statuses if s not in answers})
    result: dict = {
        "operationId": endpoint,
        "summary": operation.summary,
        "tags": [operation.tag],
        "security": _security(access, shape),
        "responses": {str(status): answers[status] for status in sorted(answers)},
    }
    if operation.description:
        result["description"] = operation.description
    parameters = [_path_parameter(name) for name in re.findall(r"{([^}]+)}", path)] + list(operation.query)
    if parameters:
        result["parameters"] = parameters
    if operation.body is not None:
        result["requestBody"] = operation.body
    result.update(operation.extensions)
    return result


def _auth_kinds(access: Access | Scope) -> tuple[Kind, ...]:
    if access in (Access.OPEN, Access.CAPABILITY):
        return ()
    scoped = (Kind.FORBIDDEN,) if isinstance(access, Scope) else ()
    return (Kind.UNAUTHORIZED, *scoped, Kind.RATE_LIMITED)


def _our_errors(kinds: tuple[Kind, ...]) -> dict[int, dict]:
    by_status: dict[int, list[Kind]] = {}
    for kind in kinds:
        if kind not in by_status.setdefault(kind.http_status, []):
            by_status[kind.http_status].append(kind)
    answers = {}
    for status, listed in by_status.items():
        answer = {
            "description": "; ".join(f"`{k.code}`: {MEANINGS[k]}" for k in listed),
            "content": {"application/json": {"schema": error_schema([k.code for k in listed])}},
        }
        answers[status] = _with_headers(status, answer)
    return answers


def _piston_error(status: int) -> dict:
    answer = {"description": "refused", "content": {"application/json": {"schema": ref("PistonError")}}}
    return _with_headers(status, answer)


def _with_headers(status: int, answer: dict) -> dict:
    if status == 429:
        return {**answer, "headers": {"Retry-After": RETRY_AFTER}}
    if status == 401:
        return {**answer, "headers": {"WWW-Authenticate": {**AUTHENTICATE, "required": True}}}
    if status == 403:
        return {**answer, "headers": {"WWW-Authenticate": AUTHENTICATE}}
    return answer


def _security(access: Access | Scope, shape: str) -> list[dict]:
    """Who may call: nobody needs a key for the open routes and the session's WebSocket (its id
    is the capability); the others take a key (with a scope, for some) once the server has keys."""
    if access in (Access.OPEN, Access.CAPABILITY):
        return []
    scopes = [str(access)] if isinstance(access, Scope) else []
    schemes = ["bearer"] + {"judge0": ["judge0Token"], "piston": ["pistonKey"], "ours": []}[shape]
    return [{scheme: scopes} for scheme in schemes]


def _path_parameter(name: str) -> dict:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": PARAMETERS[name],
        "schema": {"type": "string"},
    }


SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`sandbox-engine keys create`), needed once the server has one (or with "
        "--auth required). A route's scope is listed with it: session, run or admin.",
    },
    "judge0Token": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Auth-Token",
        "description": "The same API key, as Judge0's clients send it (Judge0's AUTHN_HEADER).",
    },
    "pistonKey": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "The same API key, bare, as Piston's clients send their api_key.",
    },
}
TAGS = {
    "sessions": "Interactive sessions: create, attach over a WebSocket, end.",
    "runs": "Batch runs: one request in, the result out.",
    "server": "The server: languages, pools, health, metrics.",
    "piston": "Piston v2's API (/api/v2), for Piston's clients.",
    "judge0": "Judge0 CE 1.13.1's API (/judge0), for Judge0's clients.",
    "ui": "The IDE's page and files.",
    "docs": "This description.",
}
DESCRIPTION = """\
JSON over HTTP, and JSON text messages over WebSockets (their schemas are the components named
in each WebSocket route's description, and in its `x-websocket` extension).

Errors of our API are `{"error": {"code", "message"}}` (the codes: `ErrorCode`); under /api/v2
they are Piston's `{"message"}`, under /judge0 Judge0's.

API keys: on a server with keys (or started with --auth required) every route but /healthz,
/readyz, the IDE's files, this document and /docs needs one; a server without keys takes none.
"""
