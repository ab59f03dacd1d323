"""Client messages acted on, whichever worker the client is connected to: the WebSocket
handler's (see ws) and a relayed client's, served on the run's worker (see relay)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from simple_websocket import ConnectionClosed

from . import watch_tokens
from .engine import Engine
from .errors import EngineError, Kind
from .protocol import ProtocolError, encode, parse_client_message
from .relay import LineReader, RelayClient
from .session import SessionRun

log = logging.getLogger(__name__)


def handle_message(run: SessionRun, raw: str | bytes, send: Callable[[dict], None]) -> None:
    """Act on one client message, or tell the client why not. No message, however hostile, may
    end the handler: Flask would write an HTTP 500 into the WebSocket and the session would run
    on with nobody attached."""
    try:
        run.handle(parse_client_message(raw))
    except ProtocolError as exc:
        send({"type": "error", "message": str(exc)})
    except (ConnectionClosed, EngineError):
        raise  # the connection's end, or the client's own (see session_socket)
    except Exception:
        log.exception("session %s: a client message failed", run.sandbox.session_id)
        send({"type": "error", "message": "the server could not act on that message"})


def serve_relayed(engine: Engine, request: dict, client: RelayClient, reader: LineReader) -> None:
    """One client of another worker's, resuming a session this worker runs (see relay)."""
    session_id = str(request.get("session"))
    takeover = bool(request.get("takeover"))
    if request.get("watch") and not request.get("probe"):
        serve_watch(engine, request, client, reader)
        return
    if request.get("revoke"):
        hub = engine.hubs.get(session_id)
        if hub is not None:
            hub.revoke()
        client.close()
        return
    if request.get("probe"):
        hub = engine.hubs.get(session_id)
        if hub is None:
            client.close(Kind.SESSION_ENDED.close_code, f"session {session_id} has ended", Kind.SESSION_ENDED)
        elif request.get("watch"):
            if not hub.ended and hub.watcher_count >= hub.max_watchers:
                message = f"session {session_id} has as many watchers as it may have"
                client.close(Kind.TOO_MANY_WATCHERS.close_code, message, Kind.TOO_MANY_WATCHERS)
            else:
                client.close()
        elif hub.attached and not takeover and not hub.ended:
            message = f"session {session_id} already has a client attached (resume with takeover=1)"
            client.close(Kind.ALREADY_ATTACHED.close_code, message, Kind.ALREADY_ATTACHED)
        else:
            client.close()
        return
    try:
        run = engine.resume(session_id, client, int(request.get("after") or 0), takeover)
    except EngineError as exc:
        client.close(exc.kind.close_code, exc.message[:120], exc.kind)
        return
    except OSError:
        return  # the other worker's client went during the replay: the grace goes on
    hub = engine.hubs.get(session_id)
    if run is None or hub is None:
        return
    while (line := reader.line()) is not None:
        if line in ("d", "l"):
            break
        raw = json.loads(line)
        try:
            handle_message(run, raw if isinstance(raw, str) else b"", lambda m: client.send_text(encode(m)))
        except EngineError as exc:
            client.close(exc.kind.close_code, exc.message[:120], exc.kind)
            hub.leave(client)
            return
    if line == "l":
        hub.leave(client)
    else:
        hub.detach(client)  # detached, dropped, or the other worker is gone


def serve_watch(engine: Engine, request: dict, client: RelayClient, reader: LineReader) -> None:
    """A watcher of another worker's, of a session this worker runs: it is sent the session's
    messages until either side closes (what it sends is answered over there: see watch)."""
    session_id = str(request.get("session"))
    hub = engine.hubs.get(session_id)
    if hub is None:
        client.close(Kind.SESSION_ENDED.close_code, f"session {session_id} has ended", Kind.SESSION_ENDED)
        return
    if not watch_tokens.valid(engine.records, session_id, str(request.get("token"))):
        kind = Kind.INVALID_TOKEN
        client.close(kind.close_code, "this watch link is not valid: mistyped, or revoked", kind)
        return
    try:
        watcher = hub.watch(client, bool(request.get("start")))
    except EngineError as exc:
        client.close(exc.kind.close_code, exc.message[:120], exc.kind)
        return
    try:
        while reader.line() is not None:
            pass  # only its end comes this way
    finally:
        hub.unwatch(watcher)
