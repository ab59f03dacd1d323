"""A Docker socket that the tests can cut: Docker "stops answering" without stopping the daemon.
It also notes each request's line (method and path), and can hold back requests of a method.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time

DOCKER_SOCKET = "/var/run/docker.sock"


class DockerProxy:
    def __init__(self, path: str, target: str = DOCKER_SOCKET) -> None:
        self.path = path
        self.target = target
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        # Every request line seen, e.g. "POST /v1.41/containers/<id>/rename?name=...", in order.
        self.requests: list[str] = []
        # Seconds to hold back requests of a method ("DELETE") before they go on to Docker.
        self.delays: dict[str, float] = {}

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def start(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
        self._listener = socket.socket(socket.AF_UNIX)
        self._listener.bind(self.path)
        self._listener.listen(64)
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def stop(self) -> None:
        """Refuse new connections and break every open one, as a dying daemon would."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        os.path.exists(self.path) and os.unlink(self.path)
        with self._lock:
            for conn in self._connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self._connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            with self._lock:
                self._connections += [client, upstream]
            for a, b, outbound in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(a, b, outbound), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, outbound: bool) -> None:
        try:
            while data := source.recv(65536):
                if outbound and (line := _REQUEST.match(data)):
                    method, path = line.group(1).decode(), line.group(2).decode()
                    with self._lock:
                        self.requests.append(f"{method} {path}")
                    time.sleep(self.delays.get(method, 0))
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


_REQUEST = re.compile(rb"(GET|POST|PUT|DELETE|HEAD) (\S+) HTTP/1\.[01]\r\n")
