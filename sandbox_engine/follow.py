"""A session's WebSocket followed across dropped connections, for the CLI (`run` and `watch`).

A connection lost without a close frame is reconnected with backoff: the controller resumes
with `?resume=<last seq>` (and `takeover=1` when the server still counts its dropped connection
as attached, since the session is its own); a watcher watches again from the start and skips
what it has seen. Each message is handed on once, by its seq; what the server says it lost
(`gap`) is told in words.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection, connect

# Waits between reconnects: quick at first (a Wi-Fi hop), then every few seconds.
BACKOFF = (0.2, 0.5, 1.0, 2.0, 4.0)
# Give up after this long without a connection: the server's reconnect grace is 60 s by default.
GIVE_UP = 90.0


class Lost(Exception):
    """The session cannot be followed any more; the message says why, in words."""


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in params] + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


class Follower:
    """One session's stream: next() returns each session message once, whatever the network."""

    def __init__(
        self,
        url: str,
        watching: bool = False,
        on_notice: Callable[[str], None] = lambda text: None,
        give_up: float = GIVE_UP,
        connector: Callable[..., ClientConnection] = connect,
    ) -> None:
        self.url = url
        self.watching = watching
        self.last_seq = 0
        self._notice = on_notice
        self._give_up = give_up
        self._connect = connector
        self._pending: list[str] = []
        self.ws: ClientConnection = self._open(url)

    def _open(self, url: str) -> ClientConnection:
        return self._connect(url, open_timeout=30, max_size=None)

    def send(self, message: dict) -> None:
        """Send now, or once reconnected when the connection is down (input is not lost)."""
        text = json.dumps(message)
        try:
            self.ws.send(text)
        except (ConnectionClosed, OSError):
            self._pending.append(text)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()

    def next(self) -> dict:
        """The next session message (or `live`, `watchers`, `error`), once; Lost when the
        session cannot be followed any more. An interrupt leaves the stream as it was."""
        while True:
            try:
                raw = self.ws.recv()
            except ConnectionClosed as closed:
                if closed.rcvd is not None:
                    # The server closed it, with its reason: taken over, revoked, ended.
                    reason = closed.rcvd.reason or f"the server closed the connection ({closed.rcvd.code})"
                    raise Lost(reason) from None
                self._reconnect()
                continue
            message = json.loads(raw)
            seq = message.get("seq")
            if isinstance(seq, int):
                if seq <= self.last_seq:
                    continue  # seen before the reconnect (a watcher watches again from the start)
                if seq > self.last_seq + 1 and self.last_seq and self.watching:
                    self._notice(f"{seq - self.last_seq - 1} messages were lost while disconnected")
                self.last_seq = seq
            elif message.get("type") == "gap":
                self._notice(f"{message['to'] - message['from'] + 1} messages were lost while disconnected")
                self.last_seq = max(self.last_seq, message["to"])
                continue
            return message

    def _reconnect(self) -> None:
        self._notice("the connection was lost; reconnecting...")
        deadline = time.monotonic() + self._give_up
        attempt = 0
        takeover = False
        while True:
            if self.watching:
                url = with_query(self.url, **{"from": "start"})
            else:
                url = with_query(
                    self.url, resume=str(self.last_seq), **({"takeover": "1"} if takeover else {})
                )
            try:
                self.ws = self._open(url)
                break
            except InvalidStatus as refused:
                status = refused.response.status_code
                if status == 409 and not self.watching and not takeover:
                    takeover = True  # our own dropped connection, not yet noticed by the server
                    continue
                if status not in (409, 429, 502, 503, 504):
                    raise Lost(_refusal(refused)) from None
            except (OSError, TimeoutError, InvalidURI):
                pass
            if time.monotonic() > deadline:
                raise Lost("the connection to the server was lost and could not be made again")
            time.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
            attempt += 1
        self._notice("reconnected")
        pending, self._pending = self._pending, []
        for text in pending:
            self.ws.send(text)


def _refusal(refused: InvalidStatus) -> str:
    try:
        return json.loads(refused.response.body or b"")["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return f"the server refused to reconnect ({refused.response.status_code})"
