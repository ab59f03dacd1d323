"""Resume across replicas (--redis-url): each worker listens on a TCP port of --relay-host, and
the session's owner's address lives in Redis (`relay:<session>`), so a resume landing on any
replica is relayed to the worker that runs the session, over the line protocol of relay.

The listener is reachable by more than the replicas, so every request carries a secret only
they know: --relay-secret, or else one the first replica made and keeps in Redis (whoever can
read Redis can read every session's code and records already).
"""

from __future__ import annotations

import logging
import secrets
import socket

import redis

from .redis_replay import ReplayMirror, stored

log = logging.getLogger(__name__)

# How long an owner's address outlives a worker killed before it could withdraw it: longer
# than any session lives (see worker.max_session_age), so only a dead worker's stay that long.
ADVERTISED_FOR = 24 * 3600
# How long a replica waits for another to accept a relayed client.
CONNECT_TIMEOUT = 5.0


class RedisOwners:
    def __init__(self, client: redis.Redis, prefix: str, host: str, secret: str = "") -> None:
        self._redis = client
        self._prefix = prefix
        self.host = host
        self.secret = secret or self._shared_secret()
        self.address = ""

    def _shared_secret(self) -> str:
        name = self._prefix + "relay-secret"
        self._redis.set(name, secrets.token_hex(32), nx=True)
        return self._redis.get(name).decode()

    def listen(self) -> socket.socket:
        listener = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        try:
            listener.bind((self.host, 0))
            listener.listen(64)
        except OSError:
            listener.close()
            raise
        port = listener.getsockname()[1]
        self.address = f"[{self.host}]:{port}" if ":" in self.host else f"{self.host}:{port}"
        return listener

    def close(self) -> None:
        """Nothing on disk; what the worker advertised it withdrew as its sessions ended."""

    def mirror(self, limit: int, grace: float) -> ReplayMirror:
        """A copy in Redis of this worker's replay buffers (see redis_replay), not started."""
        return ReplayMirror(self._redis, self._prefix, limit, grace)

    def advertise(self, session_id: str) -> None:
        if not self.address:
            return  # not listening: the resume of this session works on this worker only
        try:
            self._redis.set(self._prefix + "relay:" + session_id, self.address, ex=ADVERTISED_FOR)
        except redis.RedisError as exc:
            log.warning("session %s cannot be resumed on other replicas: %s", session_id, exc)

    def withdraw(self, session_id: str) -> None:
        try:
            self._redis.delete(self._prefix + "relay:" + session_id)
        except redis.RedisError as exc:
            log.warning("session %s: its relay address stays in Redis: %s", session_id, exc)

    def stored(self, session_id: str) -> list[str] | None:
        try:
            return stored(self._redis, self._prefix, session_id)
        except redis.RedisError as exc:
            log.warning("session %s: no copy of its messages to be had: %s", session_id, exc)
            return None

    def dial(self, session_id: str) -> socket.socket | None:
        try:
            raw = self._redis.get(self._prefix + "relay:" + session_id)
        except redis.RedisError as exc:
            raise OSError(f"redis: {exc}") from exc
        if raw is None:
            return None
        host, _, port = raw.decode().rpartition(":")
        conn = socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT)
        # A relayed session streams for as long as it runs: no timeout once connected.
        conn.settimeout(None)
        return conn
