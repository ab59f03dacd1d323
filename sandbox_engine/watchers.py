"""A session's read-only watchers: each with a bounded queue that its own thread drains.

The hub offers every message to every watcher under its lock, and an offer never waits: a
watcher that does not read (a slow network, a stopped tab) only fills its own queue. Past its
bound the queue is dropped and the watcher catches up from the replay buffer once it reads
again, with a `gap` for what the buffer no longer holds: neither the program nor the controller
ever waits for a watcher.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from .protocol import encode
from .subscriber import Subscriber

log = logging.getLogger(__name__)

LIVE = encode({"type": "live"})
# A watcher's close when the session's watch links were revoked (see errors.Kind.INVALID_TOKEN).
REVOKED = "the session's watch links were revoked"


class Watcher:
    """One read-only client. `catch_up(watcher)` (the hub's) restarts its queue from what the
    replay buffer holds after its last seq, once it fell behind past its bound."""

    def __init__(
        self,
        client: Subscriber,
        limit: int,
        catch_up: Callable[[Watcher], None],
        name: str,
    ) -> None:
        self.client = client
        self.limit = limit
        self._catch_up = catch_up
        self._name = name
        # The last seq sent (or queued, when it is behind: see take_over_queue).
        self.last_seq = 0
        # Whether it was sent `live` (the end of its replay): a catch-up before that sends it.
        self.live = False
        # The last seq of its replay: what comes after it is live.
        self.live_after = 0
        self._lock = threading.Lock()
        self._queue: deque[tuple[int | None, str]] = deque()
        self._size = 0
        self._behind = False
        self._wake = threading.Event()
        # (close code, reason, now): set once; `now` drops what is queued (a revocation).
        self._closing: tuple[int, str | None, bool] | None = None
        self._gone = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._drain, name=self._name, daemon=True)
        self._thread.start()

    # --- the hub's side: never waits ------------------------------------------------------
    def offer(self, text: str, seq: int | None = None) -> None:
        with self._lock:
            if self._gone or self._closing is not None and self._closing[2]:
                return
            if self._behind and seq is not None:
                return  # it catches up from the buffer, which holds this one too
            self._queue.append((seq, text))
            self._size += len(text)
            if self._size > self.limit:
                # Fallen behind past its bound: what it missed comes from the replay buffer.
                self._queue.clear()
                self._size = 0
                self._behind = True
        self._wake.set()

    def restart_from_buffer(self, texts: list[tuple[int | None, str]]) -> None:
        """Under the hub's lock, from catch_up: the queue becomes what the buffer still holds."""
        with self._lock:
            self._queue = deque(texts)
            self._size = 0
            self._behind = False

    def finish(self, code: int = 1000, reason: str | None = None, now: bool = False) -> None:
        """Close the watcher after what is queued (the session ended), or at once (revoked)."""
        with self._lock:
            if self._closing is None or now:
                self._closing = (code, reason, now)
            if now:
                self._queue.clear()
        self._wake.set()

    def stop(self) -> None:
        """The watcher went away: its thread ends without another send."""
        with self._lock:
            self._gone = True
            self._queue.clear()
        self._wake.set()

    def abort(self) -> None:
        """Cut a watcher whose thread may wait for ever on a send to a client that does not read."""
        self.stop()
        self.client.abort()

    def join(self, timeout: float) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # --- its own thread -------------------------------------------------------------------
    def _next(self) -> tuple[list[tuple[int | None, str]], tuple[int, str | None, bool] | None] | None:
        """What to send now, and the close if it comes after them; None once it is gone."""
        while True:
            self._wake.wait()
            with self._lock:
                if self._gone:
                    return None
                behind = self._behind
                if not behind:
                    items = list(self._queue)
                    self._queue.clear()
                    self._size = 0
                    self._wake.clear()
                    if items or self._closing is not None:
                        return items, self._closing
                    continue
            # Outside our lock: catch_up takes the hub's, which offer holds while it takes ours.
            self._catch_up(self)

    def _drain(self) -> None:
        try:
            while (batch := self._next()) is not None:
                items, closing = batch
                for seq, text in items:
                    if seq is not None:
                        self.last_seq = seq
                    self.client.send_text(text)
                    self.live = self.live or text is LIVE
                    if self._gone:
                        return
                if closing is not None and not self._pending():
                    self.client.close(closing[0], closing[1])
                    return
        except Exception as exc:  # noqa: BLE001 - a watcher that cannot be sent to is gone
            log.info("%s: a watcher went away (%s)", self._name, exc)
            self.stop()

    def _pending(self) -> bool:
        with self._lock:
            return bool(self._queue) or self._behind
