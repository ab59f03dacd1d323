"""Resume across workers: the run lives in one worker, and a client may come back to another.

Each worker listens on a unix socket in the state directory (`relay/p<pid>.sock`), and a link
named by each session it holds points to it (`relay/<session>`). A worker that gets a resume
for a session it does not hold connects there and relays, both ways, line by line:

- to the run's worker: the request (one JSON line), then the client's messages as JSON
  strings, `d` when the client detached or dropped, `l` when it closed normally;
- back: `m<text>` for each session message (the text every client gets, seq and all) and
  `c<json>` with the close code and reason when the run's worker closes the client.

JSON text holds no raw newline, so a line is a message.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable

from .errors import EngineError, Kind
from .statedir import private_directory

log = logging.getLogger(__name__)

DIRECTORY = "relay"
# A request's first line, at most; messages have the WebSocket's own bound (see ws).
MAX_REQUEST = 4096


def directory_of(state_dir: str) -> str:
    return os.path.join(state_dir, DIRECTORY)


def socket_path(state_dir: str, owner: str) -> str:
    return os.path.join(directory_of(state_dir), f"{owner}.sock")


def advertise(state_dir: str, owner: str, session_id: str) -> None:
    """Point the session's link to this worker's socket (a resume elsewhere finds it there)."""
    link = os.path.join(directory_of(state_dir), session_id)
    try:
        os.symlink(f"{owner}.sock", link)
    except FileExistsError:
        os.unlink(link)
        os.symlink(f"{owner}.sock", link)
    except OSError as exc:
        log.warning("session %s cannot be resumed on other workers: %s", session_id, exc)


def withdraw(state_dir: str, session_id: str) -> None:
    try:
        os.unlink(os.path.join(directory_of(state_dir), session_id))
    except OSError:
        pass


def owner_socket(state_dir: str, session_id: str) -> str | None:
    """The socket of the worker that holds the session, if one does."""
    try:
        target = os.readlink(os.path.join(directory_of(state_dir), session_id))
    except OSError:
        return None
    return os.path.join(directory_of(state_dir), os.path.basename(target))


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
    """This worker's socket: one thread accepts, one per relayed client serves it (see serve)."""

    def __init__(self, state_dir: str, owner: str, serve: Serve) -> None:
        self.path = socket_path(state_dir, owner)
        self._serve = serve
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        private_directory(os.path.dirname(self.path))

    def start(self) -> None:
        listener = socket.socket(socket.AF_UNIX)
        try:
            if os.path.exists(self.path):
                os.unlink(self.path)
            listener.bind(self.path)
            # Owner only, as every file of the state directory (connecting needs write).
            os.chmod(self.path, 0o600)
            listener.listen(64)
        except OSError as exc:
            listener.close()
            log.warning("no resume across workers here: %s cannot listen (%s)", self.path, exc)
            return
        self._listener = listener
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
            try:
                os.unlink(self.path)
            except OSError:
                pass
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
            if first is not None:
                self._serve(json.loads(first), client, reader)
        except Exception:
            log.exception("a relayed client failed")
        finally:
            conn.close()


def connect(state_dir: str, request: dict) -> tuple[socket.socket, LineReader]:
    """Reach the worker that holds the session, and send it the request. EngineError
    (session_ended) when no worker holds it any more."""
    path = owner_socket(state_dir, request["session"])
    if path is None:
        raise EngineError(Kind.SESSION_ENDED, f"session {request['session']} has ended")
    conn = socket.socket(socket.AF_UNIX)
    try:
        conn.connect(path)
        conn.sendall((json.dumps(request) + "\n").encode())
    except OSError:
        conn.close()
        raise EngineError(Kind.SESSION_ENDED, f"session {request['session']} has ended") from None
    return conn, LineReader(conn)


def probe(state_dir: str, session_id: str, takeover: bool = False, watch: bool = False) -> None:
    """Before the upgrade: EngineError if the run's worker would refuse this resume (or watch)."""
    request = {"session": session_id, "probe": True, "takeover": takeover, "watch": watch}
    conn, reader = connect(state_dir, request)
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
