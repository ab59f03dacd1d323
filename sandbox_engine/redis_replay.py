"""The replay buffers of resumable sessions, copied to Redis (--redis-url) for when the worker
that ran a session is gone: a replica stopped (a rolling deploy) or killed while its client was
away. The client that resumes elsewhere is then sent what it missed, from Redis, to the final
state when the run got to send it.

The copy is made off the hot path: the hub's publish (under its lock) only appends the message's
text to a queue; a thread per worker sends what queued up every FLUSH_INTERVAL, one pipeline
for every session at once, bounded as the worker's own buffer is (--replay-buffer). While the
worker holds the session it alone serves resumes (relayed from anywhere, see relay), so a copy a
moment behind is never read then; a worker killed with -9 may take its last FLUSH_INTERVAL of
messages with it, and a resume then ends without the final state (session_ended).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque

import redis

log = logging.getLogger(__name__)

# How long messages wait to be sent together: a session printing fast costs Redis one call a tick.
FLUSH_INTERVAL = 0.05
# A running session's copy outlives its last message by this much (a worker killed mid-run
# never says the session ended); an ended one's lives for the reconnect grace, as its hub does.
RUNNING_TTL = 3600


class ReplayMirror:
    """This worker's sessions' replay buffers, kept in Redis as lists of message texts."""

    def __init__(self, client: redis.Redis, prefix: str, limit: int, grace: float) -> None:
        self._redis = client
        self._prefix = prefix + "replay:"
        self.limit = limit
        self.grace = grace
        # (session, text) to append, or (session, None): the session ended.
        self._pending: deque[tuple[str, str | None]] = deque()
        # Each session's sizes in Redis, oldest first, and their total: the bound, as the buffer's.
        self._held: dict[str, tuple[deque[int], int]] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="se-replay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is queued, then stop."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # --- the hub's side: never blocks ----------------------------------------------------
    def appended(self, session_id: str, text: str) -> None:
        self._pending.append((session_id, text))
        self._wake.set()

    def ended(self, session_id: str) -> None:
        self._pending.append((session_id, None))
        self._wake.set()

    # --- the thread ----------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            self._wake.wait()
            if not self._stopping.is_set():
                time.sleep(FLUSH_INTERVAL)
            self._wake.clear()
            self.flush()
            if self._stopping.is_set() and not self._pending:
                return

    def flush(self) -> None:
        batch = []
        while self._pending:
            batch.append(self._pending.popleft())
        if not batch:
            return
        pipe = self._redis.pipeline(transaction=False)
        ttls: dict[str, int] = {}
        for session_id, text in batch:
            name = self._prefix + session_id
            if text is None:
                self._held.pop(session_id, None)
                ttls[name] = max(1, math.ceil(self.grace))
                continue
            sizes, total = self._held.get(session_id, (deque(), 0))
            size = len(text.encode("utf-8", "surrogatepass"))
            sizes.append(size)
            total += size
            evicted = 0
            while total > self.limit and len(sizes) > 1:
                total -= sizes.popleft()
                evicted += 1
            self._held[session_id] = (sizes, total)
            pipe.rpush(name, text)
            if evicted:
                pipe.ltrim(name, evicted, -1)
            ttls[name] = RUNNING_TTL
        for name, ttl in ttls.items():
            pipe.expire(name, ttl)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("replay buffers not copied to Redis: %s", exc)


def stored(client: redis.Redis, prefix: str, session_id: str) -> list[str] | None:
    """A session's copied messages, oldest first; None when none are kept."""
    texts = client.lrange(prefix + "replay:" + session_id, 0, -1)
    return [raw.decode("utf-8", "surrogatepass") for raw in texts] or None
