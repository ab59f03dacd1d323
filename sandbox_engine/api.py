"""HTTP API blueprint: sessions, languages and health."""

from __future__ import annotations

from flask import Blueprint, request

from .auth import current_key
from .errors import EngineError, Kind
from .executor import Terminal
from .protocol import ProtocolError, check_size, parse_json, shown
from .worker import current_engine as engine
from .worker import current_worker

bp = Blueprint("api", __name__)
# What POST /session takes; anything else is refused by name.
SESSION_FIELDS = ("language", "code", "tty", "cols", "rows", "mergeStderr")


def json_object() -> dict:
    """The request's body, a JSON object, or the error that says why it is not one."""
    if not request.is_json:
        raise EngineError(
            Kind.UNSUPPORTED_MEDIA_TYPE, "send the body as JSON (Content-Type: application/json)"
        )
    try:
        body = parse_json(request.get_data(cache=False) or b"")
    except ProtocolError as exc:
        raise EngineError(Kind.INVALID_JSON, f"the body is {exc}") from None
    if not isinstance(body, dict):
        raise EngineError(Kind.INVALID_REQUEST, "the body must be a JSON object")
    return body


@bp.post("/session")
def create_session():
    body = json_object()
    unknown = [name for name in body if name not in SESSION_FIELDS]
    if unknown:
        # A misspelt or unsupported field would otherwise be ignored without a word.
        raise EngineError(
            Kind.INVALID_REQUEST,
            f"unknown field {shown(unknown[0])}; the fields are {', '.join(SESSION_FIELDS)}",
        )
    for name in ("language", "code"):
        if name not in body:
            raise EngineError(Kind.INVALID_REQUEST, f"'{name}' is missing")
    language, code = body.get("language"), body.get("code")
    if not isinstance(language, str) or not language:
        raise EngineError(Kind.INVALID_REQUEST, "'language' must be a non-empty string")
    if not isinstance(code, str):
        raise EngineError(Kind.INVALID_REQUEST, "'code' must be a string")
    if not code.strip():
        raise EngineError(Kind.INVALID_REQUEST, "'code' is empty")
    merge = body.get("mergeStderr", False)
    if not isinstance(merge, bool):
        raise EngineError(Kind.INVALID_REQUEST, "'mergeStderr' must be true or false")
    session_id = engine().create_session(language, code, _terminal(body), merge, key=current_key())
    return {"sessionId": session_id}, 201, {"Location": f"/session/{session_id}"}


@bp.get("/session/<session_id>")
def get_session(session_id: str):
    return engine().describe(session_id, current_key())


@bp.delete("/session/<session_id>")
def delete_session(session_id: str):
    engine().delete(session_id, current_key())
    return "", 204


@bp.get("/languages")
def languages():
    return {"languages": engine().catalog.public()}


@bp.get("/pool")
def pool():
    # Without a pool there is nothing to ask the runtime, even when it is down.
    pool = current_worker().pool
    return {"pool": pool.levels() if pool is not None else []}


@bp.get("/healthz")
def healthz():
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    problem = engine().catalog.readiness()
    unready = EngineError(Kind.RUNTIME_UNAVAILABLE, problem) if problem is not None else None
    # Told to the engine as well: a warm take asks the runtime nothing (see Engine.create_session).
    engine().runtime_answered(unready)
    if unready is not None:
        raise unready
    return {"status": "ready"}


def _terminal(body: dict) -> Terminal | None:
    """`"tty": true` with optional cols and rows (80x24) asks for a pseudo-terminal."""
    tty = body.get("tty", False)
    if not isinstance(tty, bool):
        raise EngineError(Kind.INVALID_REQUEST, "'tty' must be true or false")
    if not tty:
        if "cols" in body or "rows" in body:
            raise EngineError(Kind.INVALID_REQUEST, "'cols' and 'rows' need \"tty\": true")
        return None
    try:
        cols, rows = check_size(body.get("cols", 80), body.get("rows", 24))
    except ProtocolError as exc:
        raise EngineError(Kind.INVALID_REQUEST, str(exc)) from None
    return Terminal(cols=cols, rows=rows)
