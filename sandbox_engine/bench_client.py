"""The benchmark's client of the public API: POST /session and the session's WebSocket, as a
user's program makes them, with as little of the client's own time in the figures as may be."""

from __future__ import annotations

import functools
import http.client
import json
import urllib.parse

import requests
from websockets.sync.client import ClientConnection, connect


class Client:
    def __init__(self, server: str) -> None:
        self.server = server.rstrip("/")
        self.http = requests.Session()
        # POST /session on a plain keep-alive connection of its own: requests spends some 0.5 ms
        # of the client's on each request (measured against /healthz here), which is no part
        # of the server's answer.
        url = urllib.parse.urlsplit(self.server)
        self._connect = functools.partial(
            http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection,
            url.hostname,
            url.port,
            timeout=60,
        )
        self._conn: http.client.HTTPConnection | None = None

    def create(self, code: str, **extra) -> str:
        body = json.dumps({"language": "python", "code": code, **extra}).encode()
        status, answer = self._post("/session", body)
        if status >= 400:
            raise RuntimeError(f"POST /session answered {status}: {answer[:300]!r}")
        return json.loads(answer)["sessionId"]

    def _post(self, path: str, body: bytes) -> tuple[int, bytes]:
        for attempt in range(2):
            if self._conn is None:
                self._conn = self._connect()
            try:
                self._conn.request("POST", path, body, {"Content-Type": "application/json"})
                response = self._conn.getresponse()
                return response.status, response.read()
            except ConnectionError:
                # The server closed the idle connection (its keep-alive ran out): once more.
                self._conn.close()
                self._conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def attach(self, session_id: str) -> ClientConnection:
        url = "ws" + self.server[len("http") :] + f"/ws/session/{session_id}"
        return connect(url, open_timeout=60, max_size=None).__enter__()
