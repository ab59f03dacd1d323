"""Resume across workers: the run lives in one worker, and a client may come back to another.

Each worker listens, and advertises each session it holds, through its Owners: on one machine
(LocalOwners) a unix socket in the state directory (`relay/p<pid>.sock`) and a link named by each
session (`relay/<session>`) pointing to it; for replicas sharing Redis (redis_relay.RedisOwners)
a TCP port and the session's owner's address in Redis. A worker that gets a resume for a session
it does not hold connects there and relays, both ways, line by line:

- to the run's worker: the request (one JSON line, with the owners' shared secret when they
  have one), then the client's messages as JSON strings, `d` when the client detached or
  dropped, `l` when it closed normally;
- back: `m<text>` for each session message (the text every client gets, seq and all) and
  `c<json>` with the close code and reason when the run's worker closes the client.

JSON text holds no raw newline, so a line is a message; one stream in order, so the hub's seq
numbering (each message once, in order) holds through the relay as it does for a local client.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Protocol

from .errors import EngineError, Kind
from .hub import Mirror
from .statedir import private_directory

log = logging.getLogger(__name__)

DIRECTORY = "relay"
# A request's first line, at most; messages have the WebSocket's own bound (see ws).
MAX_REQUEST = 4096


class Owners(Protocol):
    """Where each session's run is held, and how the other workers reach it."""

    # Sent in each request and checked by the listener ("" for none: a private unix socket).
    secret: str

    def listen(self) -> socket.socket:
        """This worker's listening socket. OSError if it cannot listen."""

    def close(self) -> None:
        """After the listener closed: whatever listening left behind."""

    def advertise(self, session_id: str) -> None: ...

    def withdraw(self, session_id: str) -> None: ...

    def dial(self, session_id: str) -> socket.socket | None:
        """A connection to the worker that holds the session; None if none does. OSError if it
        cannot be reached."""

    def mirror(self, limit: int, grace: float) -> Mirror | None:
        """Where this worker's replay buffers are copied for the others (not started), if
        anywhere: the copy `stored` reads."""

    def stored(self, session_id: str) -> list[str] | None:
        """The session's messages as a copy keeps them once no worker holds it (the texts of its
        replay buffer, oldest first); None when there is no copy."""


class LocalOwners:
    """One machine's workers: unix sockets and links in the state directory, which is private."""

    secret = ""

    def __init__(self, state_dir: str, owner: str) -> None:
        self.directory = os.path.join(state_dir, DIRECTORY)
        self.owner = owner
        self.path = os.path.join(self.directory, f"{owner}.sock")
        private_directory(self.directory)

    def listen(self) -> socket.socket:
        listener = socket.socket(socket.AF_UNIX)
        try:
            if os.path.exists(self.path):
                os.unlink(self.path)
            listener.bind(self.path)
            # Owner only, as every file of the state directory (connecting needs write).
            os.chmod(self.path, 0o600)
            listener.listen(64)
        except OSError:
            listener.close()
            raise
        return listener

    def close(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def advertise(self, session_id: str) -> None:
        """Point the session's link to this worker's socket (a resume elsewhere finds it there)."""
        link = os.path.join(self.directory, session_id)
        target = f"{self.owner}.sock"
        try:
            os.symlink(target, link)
        except FileExistsError:
            os.unlink(link)
            os.symlink(target, link)
        except OSError as exc:
            log.warning("session %s cannot be resumed on other workers: %s", session_id, exc)

    def withdraw(self, session_id: str) -> None:
        try:
            os.unlink(os.path.join(self.directory, session_id))
        except OSError:
            pass

    def mirror(self, limit: int, grace: float) -> None:
        """One machine's buffers die with their worker, and so does its session: no copy."""
        return None

    def stored(self, session_id: str) -> list[str] | None:
        return None

    def dial(self, session_id: str) -> socket.socket | None:
        try:
            target = os.readlink(os.path.join(self.directory, session_id))
        except OSError:
            return None
        conn = socket.socket(socket.AF_UNIX)
        try:
            conn.connect(os.path.join(self.directory, os.path.basename(target)))
        except OSError:
            conn.close()
            raise
        return conn


class RelayClient:
    """The run's worker's side of one relayed client: what the hub sends goes down the socket."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def send_text(self, text: str) -> None:
        with self._lock:
            self._conn.sendall(("m" + text + "\n").encode("utf-8", "surrogatepass"))

    def close(self, code: int = 1000, reason: str | None = None, kind: Kind | None = None) -> None:
        closing = {"code": code, "reason": reason, "kind": kind.code if kind is not None else None}
        try:
            with self._lock:
                self._conn.sendall(("c" + json.dumps(closing) + "\n").encode())
        except OSError:
            pass

    def abort(self) -> None:
        try:
            self._conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# Serves one relayed client on the run's worker: (the request, its connection, its reader).
Serve = Callable[[dict, RelayClient, "LineReader"], None]


class LineReader:
    def __init__(self, conn: socket.socket) -> None:
        self._file = conn.makefile("rb")

    def line(self, limit: int = -1) -> str | None:
        """The next line, without its newline; None at the end."""
        raw = self._file.readline(limit)
        if not raw or not raw.endswith(b"\n"):
            return None
        return raw[:-1].decode("utf-8", "surrogatepass")


class RelayServer:
    """This worker's listener: one thread accepts, one per relayed client serves it (see serve)."""

    def __init__(self, owners: Owners, serve: Serve) -> None:
        self.owners = owners
        self._serve = serve
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            self._listener = self.owners.listen()
        except OSError as exc:
            log.warning("no resume across workers here: cannot listen (%s)", exc)
            return
        self._thread = threading.Thread(target=self._accept, name="se-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept: a close alone does not
            except OSError:
                pass
            listener.close()
            self.owners.close()
        if self._thread is not None:
            self._thread.join(2.0)

    def _accept(self) -> None:
        listener = self._listener
        while listener is not None:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), name="se-relayed", daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        client = RelayClient(conn)
        reader = LineReader(conn)
        try:
            first = reader.line(MAX_REQUEST)
            request = json.loads(first) if first is not None else None
            # A TCP listener is reachable by more than the replicas: only they know the secret.
            if isinstance(request, dict) and hmac.compare_digest(
                str(request.pop("secret", "")), self.owners.secret
            ):
                self._serve(request, client, reader)
        except Exception:
            log.exception("a relayed client failed")
        finally:
            conn.close()


def connect(owners: Owners, request: dict) -> tuple[socket.socket, LineReader]:
    """Reach the worker that holds the session, and send it the request. EngineError
    (session_ended) when no worker holds it any more."""
    ended = EngineError(Kind.SESSION_ENDED, f"session {request['session']} has ended")
    try:
        conn = owners.dial(request["session"])
    except OSError:
        raise ended from None
    if conn is None:
        raise ended
    try:
        conn.sendall((json.dumps({**request, "secret": owners.secret}) + "\n").encode())
    except OSError:
        conn.close()
        raise ended from None
    return conn, LineReader(conn)


def probe(owners: Owners, session_id: str, takeover: bool = False, watch: bool = False) -> None:
    """Before the upgrade: EngineError if the run's worker would refuse this resume (or watch)."""
    request = {"session": session_id, "probe": True, "takeover": takeover, "watch": watch}
    conn, reader = connect(owners, request)
    try:
        answer = reader.line(MAX_REQUEST)
    finally:
        conn.close()
    if answer is None or not answer.startswith("c"):
        raise EngineError(Kind.SESSION_ENDED, f"session {session_id} has ended")
    closed = json.loads(answer[1:])
    if closed.get("kind"):
        kind = next((k for k in Kind if k.code == closed["kind"]), Kind.INTERNAL)
        raise EngineError(kind, closed["reason"] or kind.code)
