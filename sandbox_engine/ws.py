"""WebSocket blueprint: one connection drives one session's run."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Blueprint, current_app, request
from flask_sock import Sock
from simple_websocket import ConnectionClosed

from .errors import EngineError, Kind
from .protocol import ProtocolError, encode, parse_client_message, shown
from .session import SessionRun
from .worker import current_engine as engine

log = logging.getLogger(__name__)

bp = Blueprint("ws", __name__)
sock = Sock()
# Large enough for any paste into a program's stdin, small enough that no client can balloon us.
MAX_MESSAGE = 1 << 20


class WholeFrameSocket:
    """A socket whose send() sends everything.

    simple-websocket 1.1.0 writes frames with socket.send, which under gevent may send part of
    a large frame and drop the rest (simple-websocket issue #45); sendall never does.
    """

    def __init__(self, raw) -> None:
        self._raw = raw

    def send(self, data: bytes) -> int:
        self._raw.sendall(data)
        return len(data)

    def __getattr__(self, name: str):
        return getattr(self._raw, name)


class Channel:
    """The server's side of the client connection: thread-safe sends and one orderly close."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self._lock = threading.Lock()

    def send(self, message: dict) -> None:
        with self._lock:
            self.ws.send(encode(message))

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        with self._lock:
            try:
                self.ws.close(reason=code, message=reason)
            except ConnectionClosed:
                pass
            # Wake the handler's receive(), which waits for client data that will not come.
            self.ws.event.set()


@bp.before_request
def refuse_before_upgrade():
    """flask-sock completes the handshake before the handler runs, so refusals happen here."""
    origin = request.headers.get("Origin")
    if origin and not _origin_allowed(origin):
        raise EngineError(Kind.FORBIDDEN, f"origin {shown(origin)} may not open sessions here")
    engine().check_attachable(request.view_args["session_id"])
    for key in ("gunicorn.socket", "werkzeug.socket"):
        if key in request.environ:
            request.environ[key] = WholeFrameSocket(request.environ[key])


def _origin_allowed(origin: str) -> bool:
    allowed = current_app.config["SANDBOX"].allowed_origins
    if "*" in allowed or origin in allowed:
        return True
    # Same origin as the page that served the IDE, also when a proxy sits in front.
    host = request.headers.get("X-Forwarded-Host") or request.host
    return urlsplit(origin).netloc == host


@sock.route("/ws/session/<session_id>", bp=bp)
def session_socket(ws, session_id: str) -> None:
    channel = Channel(ws)
    try:
        run = engine().attach(session_id, channel.send, channel.close)
    except EngineError as exc:
        # Lost a race the pre-upgrade check could not see (another attachment, a dead Docker).
        channel.close(exc.kind.close_code, exc.message[:120])
        return
    try:
        while not run.finished:
            raw = ws.receive()
            if raw is not None:
                handle_message(run, raw, channel.send)
    except ConnectionClosed:
        # Either we closed it after the final state, or the client went away mid-run.
        if not run.finished and run.outcome is None:
            run.client_gone()


def handle_message(run: SessionRun, raw: str | bytes, send: Callable[[dict], None]) -> None:
    """Act on one client message, or tell the client why not. No message, however hostile, may
    end the handler: Flask would write an HTTP 500 into the WebSocket and the session would run
    on with nobody attached."""
    try:
        run.handle(parse_client_message(raw))
    except ProtocolError as exc:
        send({"type": "error", "message": str(exc)})
    except ConnectionClosed:
        raise
    except Exception:
        log.exception("session %s: a client message failed", run.sandbox.session_id)
        send({"type": "error", "message": "the server could not act on that message"})
