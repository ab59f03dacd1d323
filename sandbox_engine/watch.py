"""Watchers blueprint: share links and the read-only WebSocket that follows a session.

`POST /session/<id>/watchers` makes a watch link (a token valid on every worker: see
watch_tokens), `DELETE` revokes them all and closes the watchers attached, and
`/ws/session/<id>/watch?token=...&from=start|now` streams the session's messages, read-only,
from whichever worker the watcher lands on (relayed to the run's worker like a resume).
"""

from __future__ import annotations

import logging
import threading
import uuid

from flask import Blueprint, request
from simple_websocket import ConnectionClosed

from . import relay, watch_tokens
from .auth import current_key
from .errors import EngineError, Kind
from .protocol import encode, shown
from .records import Record
from .states import State
from .worker import current_engine as engine
from .worker import current_owners
from .ws import Channel, WholeFrameSocket, downstream, hang_up, origin_allowed, sock

log = logging.getLogger(__name__)

bp = Blueprint("watch", __name__)
FROM = ("start", "now")
READ_ONLY = encode(
    {
        "type": "error",
        "code": "read_only",
        "message": "this is a watch of the session: it takes no input, signal, resize or kill",
    }
)
SOCKETS = ("watch.watch_socket", "watch.without_upgrade")


@bp.post("/session/<session_id>/watchers")
def create_watchers(session_id: str):
    """A link that follows the session read-only: the IDE's page at /watch/<id>?token=..."""
    engine().describe(session_id, current_key())
    token = watch_tokens.mint(engine().records, session_id)
    return {"watchToken": token, "url": f"{request.url_root}watch/{session_id}?token={token}"}, 201


@bp.delete("/session/<session_id>/watchers")
def revoke_watchers(session_id: str):
    """Every link of the session stops working, and the watchers attached are closed (4403)."""
    engine().describe(session_id, current_key())
    watch_tokens.revoke(engine().records, session_id)
    hub = engine().hubs.get(session_id)
    if hub is not None:
        hub.revoke()
        return "", 204
    try:
        conn, reader = relay.connect(current_owners(), {"session": session_id, "revoke": True})
    except EngineError:
        return "", 204  # no worker runs it: nobody watches
    try:
        reader.line(relay.MAX_REQUEST)  # its answer, once the watchers are told
    finally:
        conn.close()
    return "", 204


@bp.before_request
def refuse_before_upgrade():
    """The watch's refusals, as plain HTTP before the handshake (see ws.refuse_before_upgrade)."""
    if request.endpoint not in SOCKETS:
        return
    origin = request.headers.get("Origin")
    if origin and not origin_allowed(origin):
        raise EngineError(Kind.FORBIDDEN, f"origin {shown(origin)} may not watch sessions here")
    session_id = request.view_args["session_id"]
    token, _ = watch_args()
    record = _record(session_id)
    if not watch_tokens.valid(engine().records, session_id, token):
        raise EngineError(Kind.INVALID_TOKEN, "this watch link is not valid: mistyped, or revoked")
    hub = engine().hubs.get(session_id)
    if hub is not None:
        if not hub.ended and hub.watcher_count >= hub.max_watchers:
            raise EngineError(
                Kind.TOO_MANY_WATCHERS, f"session {session_id} has as many watchers as it may have"
            )
    elif record.state is State.CREATED and not record.final:
        raise EngineError(Kind.NOT_STARTED, f"session {session_id} has not started: nothing to watch yet")
    else:
        relay.probe(current_owners(), session_id, watch=True)
    for key in ("gunicorn.socket", "werkzeug.socket"):
        if key in request.environ:
            request.environ[key] = WholeFrameSocket(request.environ[key])


def _record(session_id: str) -> Record:
    """The session's record, whoever owns it: the token is the capability here."""
    try:
        known = str(uuid.UUID(session_id)) == session_id
    except ValueError:
        known = False
    record = engine().records.read(session_id) if known else None
    if record is None or record.batch:
        raise EngineError(Kind.NOT_FOUND, f"no session {shown(session_id)}")
    return record


def watch_args() -> tuple[str, bool]:
    """?token=<the link's token> and ?from=start (the default: what the buffer holds) or now."""
    start = request.args.get("from", "start")
    if start not in FROM:
        raise EngineError(Kind.INVALID_REQUEST, f"from must be start or now, got {shown(start)}")
    return request.args.get("token", ""), start == "start"


@bp.get("/ws/session/<session_id>/watch")
def without_upgrade(session_id: str):
    raise EngineError(Kind.UPGRADE_REQUIRED, "this is a WebSocket endpoint: connect with Upgrade: websocket")


@sock.route("/ws/session/<session_id>/watch", bp=bp)
def watch_socket(ws, session_id: str) -> None:
    channel = Channel(ws)
    token, from_start = watch_args()
    hub = engine().hubs.get(session_id)
    engine().metrics.reattached("watch", hub is None)
    if hub is None:
        relayed({"session": session_id, "watch": True, "start": from_start, "token": token}, ws, channel)
        return
    if not watch_tokens.valid(engine().records, session_id, token):
        channel.close(Kind.INVALID_TOKEN.close_code, "this watch link is not valid: mistyped, or revoked")
        return
    try:
        watcher = hub.watch(channel, from_start)
    except EngineError as exc:
        channel.close(exc.kind.close_code, exc.message[:120])
        return
    try:
        refuse_all(ws, channel)
    finally:
        hub.unwatch(watcher)


def refuse_all(ws, channel: Channel) -> None:
    """Answer whatever a watcher sends with an error, until it goes or is closed."""
    try:
        while not channel.closed:
            if ws.receive() is not None:
                channel.send_text(READ_ONLY)
    except ConnectionClosed:
        pass


def relayed(request: dict, ws, channel: Channel) -> None:
    """A watch of a session another worker runs: its messages come through the relay; what the
    watcher sends is answered here and never goes there."""
    try:
        conn, reader = relay.connect(current_owners(), request)
    except EngineError as exc:
        channel.close(exc.kind.close_code, exc.message[:120])
        return
    sending = threading.Thread(
        target=downstream, args=(reader, channel), name=f"se-watch-{request['session']}", daemon=True
    )
    sending.start()
    try:
        refuse_all(ws, channel)
        conn.sendall(b"l\n")
    except OSError:
        pass
    finally:
        hang_up(conn, sending)
