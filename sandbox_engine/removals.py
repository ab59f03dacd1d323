"""Removals: ended sessions' sandboxes removed once sessions stop arriving, not while they start.

Removing a container costs dockerd, containerd and runc a good part of a core for tens of
milliseconds (its layer unmounted and deleted, its cgroup and names freed), and so does starting
one. A sandbox whose program has ended holds no process and no memory, only its stopped container
and its uid: its removal can wait for a quiet moment, as the pool's refill does (see pool), so
that sessions starting meanwhile, a burst's above all, have the machine to themselves. It never
waits long: at most LONGEST, or until MOST are waiting, or shutdown, whichever comes first; then
one at a time, oldest first, on a thread of its own. A worker that dies with removals waiting
leaves its sandboxes to the reaper, as any crash does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

# Sessions arriving less than this far apart keep removals waiting (pool.QUIET's measure).
QUIET = 0.5
# No removal waits longer than this, nor while more than MOST wait.
LONGEST = 2.0
MOST = 64


class Removals:
    def __init__(
        self,
        quiet_for: Callable[[], float] | None = None,
        quiet: float = QUIET,
        longest: float = LONGEST,
        most: int = MOST,
    ) -> None:
        # Seconds since the last session started (in every worker's view when a pool is shared:
        # see worker); by default this worker's own count.
        self.quiet_for = quiet_for or self._since_started
        self.quiet = quiet
        self.longest = longest
        self.most = most
        self._started = 0.0
        self._waiting: deque[tuple[float, Callable[[], None]]] = deque()
        # What each waiting or running removal is for (a session), until it is done.
        self._held: set[str] = set()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._flushing = False

    def started(self) -> None:
        """A session started in this worker."""
        self._started = time.monotonic()

    def _since_started(self) -> float:
        return time.monotonic() - self._started

    def add(self, key: str, remove: Callable[[], None]) -> None:
        """Run `remove` (which must not raise) once quiet, or soon at the latest; `key` is held
        until it is done."""

        def removing() -> None:
            try:
                remove()
            finally:
                with self._wake:
                    self._held.discard(key)

        with self._wake:
            self._held.add(key)
            self._waiting.append((time.monotonic(), removing))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="se-removals", daemon=True)
                self._thread.start()
            self._wake.notify()

    def pending(self) -> int:
        return len(self._waiting)

    def holds(self, key: str) -> bool:
        """Whether a removal for `key` waits or runs: its sandbox is not the reaper's."""
        with self._wake:
            return key in self._held

    def flush(self, timeout: float = 30.0) -> None:
        """Remove every waiting sandbox now, and wait until done (at shutdown)."""
        with self._wake:
            self._flushing = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("removals: %d sandboxes still waiting after %.0f s", self.pending(), timeout)

    def _next(self) -> Callable[[], None] | None:
        """The oldest removal once it is due; None when there is nothing left to do."""
        with self._wake:
            while True:
                if not self._waiting:
                    if self._flushing:
                        self._thread = None
                        return None
                    self._wake.wait()
                    continue
                queued_at, remove = self._waiting[0]
                waited = time.monotonic() - queued_at
                quiet_for = self.quiet_for()
                if self._flushing or len(self._waiting) > self.most or waited >= self.longest:
                    break
                if quiet_for >= self.quiet:
                    break
                self._wake.wait(min(self.quiet - quiet_for, self.longest - waited))
            self._waiting.popleft()
            return remove

    def _loop(self) -> None:
        while (remove := self._next()) is not None:
            try:
                remove()
            except Exception:
                log.exception("removal failed")
