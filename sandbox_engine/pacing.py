"""Pacing of a client's controls: signals by rate, terminal resizes coalesced.

Each signal and each resize is a call to the runtime (and, for a resize, a SIGWINCH the program
handles): a client sending hundreds a second makes the daemon busy for everyone, so signals
beyond a few a second are refused, and resizes closer together than a tenth of a second are
coalesced into the last one.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

from .executor import ExecutorError, Sandbox
from .protocol import ProtocolError

log = logging.getLogger(__name__)

SIGNALS_PER_SECOND = 5
RESIZE_INTERVAL = 0.1


class SignalRate:
    """At most `per_second` signals in any second."""

    def __init__(self, per_second: int = SIGNALS_PER_SECOND) -> None:
        self.per_second = per_second
        self._times: collections.deque[float] = collections.deque()

    def allow(self, now: float) -> bool:
        while self._times and now - self._times[0] >= 1.0:
            self._times.popleft()
        if len(self._times) >= self.per_second:
            return False
        self._times.append(now)
        return True


class Resizes:
    """The last size asked for, applied at most once per `interval`."""

    def __init__(self, interval: float = RESIZE_INTERVAL) -> None:
        self.interval = interval
        self._last = float("-inf")
        self.pending: tuple[int, int] | None = None

    def ask(self, size: tuple[int, int], now: float) -> tuple[int, int] | None:
        """The size to apply now, or None when it waits (coalesced) until due()."""
        if now - self._last >= self.interval:
            self._last, self.pending = now, None
            return size
        self.pending = size
        return None

    @property
    def due(self) -> float | None:
        """When the waiting size may be applied; None when none waits."""
        return None if self.pending is None else self._last + self.interval

    def take(self, now: float) -> tuple[int, int] | None:
        """The waiting size, if it is due."""
        if self.pending is None or now < self._last + self.interval:
            return None
        size, self.pending, self._last = self.pending, None, now
        return size


class Controls:
    """A client's signals and resizes, paced, applied to one sandbox."""

    def __init__(self, sandbox: Sandbox, clock: Callable[[], float], wake: Callable[[], None]) -> None:
        """`wake` tells the thread that calls apply_due() that a coalesced resize waits."""
        self.sandbox = sandbox
        self._clock = clock
        self._wake = wake
        self._signals = SignalRate()
        self._resizes = Resizes()
        self._lock = threading.Lock()

    def signal(self, name: str) -> None:
        """Send the signal, or ProtocolError past the rate."""
        with self._lock:
            allowed = self._signals.allow(self._clock())
        if not allowed:
            raise ProtocolError(f"too many signals: at most {self._signals.per_second} a second")
        self.sandbox.signal(name)

    def resize(self, cols: int, rows: int) -> None:
        """Resize now, or leave the size for apply_due() when it comes too soon after the last."""
        with self._lock:
            size = self._resizes.ask((cols, rows), self._clock())
        if size is not None:
            self.sandbox.resize(*size)
        else:
            self._wake()

    def apply_due(self, now: float) -> float:
        """Apply a coalesced resize that is due; when the next one will be (inf: none waits)."""
        with self._lock:
            size = self._resizes.take(now)
            due = self._resizes.due
        if size is not None:
            try:
                self.sandbox.resize(*size)
            except ExecutorError as exc:
                log.warning("resize of %s failed: %s", self.sandbox.session_id, exc)
        return due if due is not None else float("inf")
