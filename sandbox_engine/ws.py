"""WebSocket blueprint: one connection drives one session's run."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from urllib.parse import urlsplit

from flask import Blueprint, current_app, request
from flask_sock import Sock
from simple_websocket import ConnectionClosed
from wsproto.frame_protocol import CloseReason

from . import relay
from .errors import EngineError, Kind
from .hub import SessionHub
from .protocol import ProtocolError, encode, parse_json, shown
from .relayed import handle_message
from .replay import stored_since
from .session import SessionRun
from .states import State
from .worker import current_engine as engine
from .worker import current_owners

log = logging.getLogger(__name__)

bp = Blueprint("ws", __name__)
sock = Sock()
# Large enough for any paste into a program's stdin, small enough that no client can balloon us.
MAX_MESSAGE = 1 << 20
# How long a client we closed may go on sending before its connection is dropped.
LINGER = 2.0


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
        # Set once the server closed it: after the final state, or when another client took over.
        self.closed = False

    def send(self, message: dict) -> None:
        self.send_text(encode(message))

    def send_text(self, text: str) -> None:
        with self._lock:
            self.ws.send(text)

    def abort(self) -> None:
        """Cut the connection without a close frame and without the send lock: for a client that
        stopped reading, on which a send (holding the lock) may wait for ever."""
        raw = getattr(self.ws, "sock", None)
        if raw is not None:
            try:
                raw.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.ws.event.set()

    def linger(self, timeout: float) -> None:
        """After a close of ours while the client may still be sending: drop what it sends until
        it closes too (or timeout). Closing at once would answer its data with a reset, which
        throws away our close frame before the client reads it, and with it the reason."""
        raw = getattr(self.ws, "sock", None)
        if raw is None:
            return
        try:
            raw.shutdown(socket.SHUT_WR)
            raw.settimeout(0.2)
        except OSError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if not raw.recv(65536):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = True
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
    if origin and not origin_allowed(origin):
        raise EngineError(Kind.FORBIDDEN, f"origin {shown(origin)} may not open sessions here")
    resume, takeover = attach_args()
    session_id = request.view_args["session_id"]
    if engine().check_attachable(session_id, resume, takeover):
        try:
            relay.probe(current_owners(), session_id, takeover)
        except EngineError as exc:
            # No worker holds it any more, but a copy of its messages may (see replay_stored).
            if exc.kind is not Kind.SESSION_ENDED or current_owners().stored(session_id) is None:
                raise
    for key in ("gunicorn.socket", "werkzeug.socket"):
        if key in request.environ:
            request.environ[key] = WholeFrameSocket(request.environ[key])


def origin_allowed(origin: str) -> bool:
    allowed = current_app.config["SANDBOX"].allowed_origins
    if "*" in allowed or origin in allowed:
        return True
    # Same origin as the page that served the IDE, also when a proxy sits in front.
    host = request.headers.get("X-Forwarded-Host") or request.host
    return urlsplit(origin).netloc == host


@bp.get("/ws/session/<session_id>")
def without_upgrade(session_id: str):
    """A plain GET of a session's WebSocket URL: the same refusals as a WebSocket gets (they ran
    before this, in refuse_before_upgrade), else word that a WebSocket is needed. Without this
    route, Werkzeug's router answers every plain GET with a bare 400."""
    raise EngineError(Kind.UPGRADE_REQUIRED, "this is a WebSocket endpoint: connect with Upgrade: websocket")


def attach_args() -> tuple[int | None, bool]:
    """?resume=<lastSeq> (the last seq the client saw; 0 for everything) and ?takeover=1."""
    raw = request.args.get("resume")
    resume = None
    if raw is not None:
        if not raw.isdigit() or len(raw) > 18:
            raise EngineError(Kind.INVALID_REQUEST, f"resume must be the last seq received, got {shown(raw)}")
        resume = int(raw)
    return resume, request.args.get("takeover") in ("1", "true")


@sock.route("/ws/session/<session_id>", bp=bp)
def session_socket(ws, session_id: str) -> None:
    channel = Channel(ws)
    resume, takeover = attach_args()
    if resume is not None and engine().hubs.get(session_id) is None:
        engine().metrics.reattached("resume", True)
        relayed(ws, channel, {"session": session_id, "after": resume, "takeover": takeover})
        return
    if resume is not None:
        engine().metrics.reattached("resume", False)
    try:
        if resume is None:
            run = engine().attach(session_id, channel)
        else:
            run = engine().resume(session_id, channel, resume, takeover)
    except EngineError as exc:
        # Lost a race the pre-upgrade check could not see (another attachment, a dead Docker).
        channel.close(exc.kind.close_code, exc.message[:120])
        return
    except ConnectionClosed:
        return  # gone during the replay: the grace goes on
    hub = engine().hubs.get(session_id)
    if run is None or hub is None:
        return  # ended: the replay closed it after the final state
    drive(ws, channel, run, hub)


def drive(ws, channel: Channel, run: SessionRun, hub: SessionHub) -> None:
    """Hand the client's messages to the run until the run ends, the client detaches, goes
    away or is taken over. A close frame from the client ends the session; a connection lost
    without one, or a detach message, leaves the program running for the reconnect grace."""
    try:
        while not run.finished and not channel.closed:
            raw = ws.receive()
            if raw is None:
                continue
            if is_detach(raw):
                hub.detach(channel)
                channel.close(1000, "detached")
                return
            try:
                handle_message(run, raw, channel.send)
            except EngineError as exc:
                # Input the program does not read, past the limit: this client is closed, and
                # its session ends as on a normal close.
                channel.close(exc.kind.close_code, exc.message[:120])
                channel.linger(LINGER)
                hub.leave(channel)
                return
    except ConnectionClosed:
        if channel.closed or run.finished:
            return  # we closed it: after the final state, a takeover or a detach
        if ws.close_reason == CloseReason.NO_STATUS_RCVD:
            hub.detach(channel)  # lost without a close frame
        else:
            hub.leave(channel)


def relayed(ws, channel: Channel, request: dict) -> None:
    """A resume of a session another worker runs: relay both ways to that worker (see relay)."""
    try:
        conn, reader = relay.connect(current_owners(), request)
    except EngineError as exc:
        if exc.kind is not Kind.SESSION_ENDED or not replay_stored(channel, request):
            channel.close(exc.kind.close_code, exc.message[:120])
        return
    log.info(
        "session %s: resumed through %s, relayed to the worker that runs it",
        request["session"],
        engine().owner,
    )
    sending = threading.Thread(
        target=downstream, args=(reader, channel), name=f"se-relay-{request['session']}", daemon=True
    )
    sending.start()
    try:
        while not channel.closed:
            raw = ws.receive()
            if raw is None:
                continue
            if is_detach(raw):
                conn.sendall(b"d\n")
                channel.close(1000, "detached")
                return
            conn.sendall((json.dumps(raw if isinstance(raw, str) else None) + "\n").encode())
    except ConnectionClosed:
        if not channel.closed:
            conn.sendall(b"d\n" if ws.close_reason == CloseReason.NO_STATUS_RCVD else b"l\n")
    except OSError:
        channel.close(Kind.INTERNAL.close_code, "the worker that runs this session is gone")
    finally:
        hang_up(conn, sending)


def hang_up(conn: socket.socket, sending: threading.Thread) -> None:
    """End a relayed connection: the run's worker sees the client gone, and what it still sent
    on its way down gets a moment to reach the client."""
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sending.join(LINGER)
    conn.close()


def replay_stored(channel: Channel, request: dict) -> bool:
    """A resume of a session no worker holds any more, from the copy of its messages (see
    redis_replay): what the client missed, then a normal close if that reached the final state,
    else session_ended (the worker that ran it went before it could send it). False: no copy."""
    texts = current_owners().stored(request["session"])
    if texts is None:
        return False
    try:
        gap, missed = stored_since(texts, request["after"])
    except ValueError as exc:
        channel.close(Kind.INVALID_REQUEST.close_code, f"cannot resume: {exc}"[:120])
        return True
    try:
        if gap is not None:
            channel.send(gap.message())
        for text in missed:
            channel.send_text(text)
    except ConnectionClosed:
        return True
    last = json.loads(texts[-1])
    if last.get("type") == "state" and State(last.get("state")).final:
        channel.close(1000, None)
    else:
        message = f"session {request['session']} has ended: the server that ran it is gone"
        channel.close(Kind.SESSION_ENDED.close_code, message[:120])
    return True


def downstream(reader: relay.LineReader, channel: Channel) -> None:
    """The session's messages from the run's worker to the client, then its close."""
    try:
        while (line := reader.line()) is not None:
            if line.startswith("m"):
                channel.send_text(line[1:])
            elif line.startswith("c"):
                closing = json.loads(line[1:])
                channel.close(closing["code"], closing["reason"])
                return
    except (ConnectionClosed, OSError):
        return  # the client went: the other side tells the run's worker
    if not channel.closed:
        channel.close(Kind.INTERNAL.close_code, "the worker that runs this session is gone")


def is_detach(raw: str | bytes) -> bool:
    return isinstance(raw, str) and '"detach"' in raw and _type_of(raw) == "detach"


def _type_of(raw: str) -> object:
    try:
        message = parse_json(raw)
    except ProtocolError:
        return None
    return message.get("type") if isinstance(message, dict) else None
