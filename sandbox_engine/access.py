"""Every HTTP request's id, its line in the log when it is answered, and, for an error, its count
in the metrics; a WebSocket's line comes at its end, when its handler returns.

The line names the route (the URL rule, `/session/<session_id>`), never the path: a session's id
is a capability. Nor does it hold a header's value (the Authorization header least of all) or a
body; only the request id a proxy sent is kept, when it looks like one.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from flask import Flask, Response, g, request

from . import logs
from .auth import current_key
from .errors import kind_for_status
from .metrics import Metrics

HEADER = "X-Request-Id"
# A proxy's request id (nginx's $request_id is 32 hex digits) is kept when it is this plain.
_GIVEN = re.compile(r"[A-Za-z0-9._:-]{1,64}")

log = logging.getLogger(__name__)


def install(app: Flask, metrics: Metrics, api_of: Callable[[str], str]) -> None:
    """Hooks on `app`: its requests get an id and a line; its error answers are counted by API
    (`api_of(path)`) and code. Installed before any other hook, so the id is there for them."""
    app.before_request(_begin)

    @app.after_request
    def answered(response: Response) -> Response:
        return _answered(response, metrics, api_of)


def refused(code: str) -> None:
    """The error code this request is answered with, from an error handler: the status alone
    does not tell a 429 at_capacity from a 429 rate_limited."""
    g.error_code = code


def _begin() -> None:
    given = request.headers.get(HEADER, "")
    g.request_id = given if _GIVEN.fullmatch(given) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _answered(response: Response, metrics: Metrics, api_of: Callable[[str], str]) -> Response:
    rule = request.url_rule
    status = response.status_code
    if rule is not None and rule.websocket and status == 200:
        status = 101  # the handshake was made and the connection has just ended
    code = None
    if status >= 400:
        code = g.get("error_code") or kind_for_status(status).code
        metrics.refused(api_of(request.path), code)
    started = g.get("request_started")
    rid = g.get("request_id") or uuid.uuid4().hex
    key = current_key()
    response.headers[HEADER] = rid
    logs.event(
        log,
        "request",
        requestId=rid,
        key=key.name if key is not None else None,
        method=request.method,
        route=rule.rule if rule is not None else None,
        status=status,
        durationMs=round((time.perf_counter() - started) * 1000, 1) if started is not None else None,
        error=code,
    )
    return response
