"""Piston v2's HTTP API (`/api/v2/runtimes`, `/api/v2/execute`), so that a client written for a
self-hosted Piston only changes the host. Its WebSocket, /api/v2/connect, is piston_ws.

Every error is Piston's `{"message": "..."}`, with our status: 400 for what Piston refuses with
400, ours (413, 429, 503) for what it has no answer for.
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, request
from werkzeug.exceptions import HTTPException

from . import access
from .auth import current_key
from .errors import EngineError, Kind, runtime_error
from .executor import ExecutorError
from .piston_answers import execute_answer
from .piston_protocol import PistonError, Runtime, ServerLimits, parse_job, run_request, runtimes
from .protocol import ProtocolError, parse_json
from .worker import current_engine, current_runs

log = logging.getLogger(__name__)

PREFIX = "/api/v2"
bp = Blueprint("piston", __name__, url_prefix=PREFIX)


def owns(path: str) -> bool:
    """Whether a path is Piston's, whose errors are answered in Piston's shape."""
    return path == PREFIX or path.startswith(PREFIX + "/")


def error_answer(status: int, message: str, headers: dict[str, str] | None = None):
    return {"message": message}, status, headers or {}


def available_runtimes() -> list[Runtime]:
    return runtimes(current_engine().catalog.versions())


def server_limits() -> ServerLimits:
    return ServerLimits.of(current_app.config["SANDBOX"])


@bp.get("/runtimes")
def list_runtimes():
    return [runtime.public() for runtime in available_runtimes()]


@bp.post("/execute")
def execute():
    if not (request.content_type or "").startswith("application/json"):
        raise EngineError(Kind.UNSUPPORTED_MEDIA_TYPE, "requests must be of type application/json")
    try:
        body = parse_json(request.get_data(cache=False) or b"")
    except ProtocolError as exc:
        raise PistonError(f"the body is {exc}") from None
    job = parse_job(body, available_runtimes(), server_limits())
    runner = current_runs()
    if runner is None:
        raise EngineError(Kind.RUNTIME_UNAVAILABLE, "this server does not offer batch runs yet")
    return execute_answer(runner.run(run_request(job), current_key()), job.runtime)


@bp.errorhandler(PistonError)
def piston_error(exc: PistonError):
    return error_answer(400, exc.message)


@bp.errorhandler(EngineError)
def engine_error(exc: EngineError):
    access.refused(exc.kind.code)
    return error_answer(exc.kind.http_status, exc.message, exc.headers)


@bp.errorhandler(ExecutorError)
def executor_error(exc: ExecutorError):
    return engine_error(runtime_error(exc))


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    return error_answer(exc.code or 500, exc.description or exc.name)


@bp.errorhandler(Exception)
def unexpected(exc: Exception):
    log.exception("unhandled error in Piston's API")
    return error_answer(500, "internal error")
