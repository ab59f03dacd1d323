"""Which warm sandboxes a session may take: the pool as a worker last listed it.

Listing containers contends in the daemon with every start and rename, so a burst of sessions
does not list once each: one lists while the others wait for its answer (on a lock of its own:
no runtime call is made under the engine's lock). A sandbox another worker took since is simply
skipped (its take fails); one this worker took is dropped at once.
"""

from __future__ import annotations

import random
import threading
import time

from .executor import Executor, SandboxInfo, SandboxRef

# How old a listing of the pool may be when a session looks for a warm sandbox in it.
TTL = 0.5


class WarmListing:
    def __init__(self, executor: Executor, kinds: set[tuple[str, bool]], ttl: float = TTL) -> None:
        """`kinds`: the (language, tty) pairs the pool keeps; for others nothing is listed."""
        self.executor = executor
        self.kinds = kinds
        self.ttl = ttl
        self._listing = threading.Lock()
        self._lock = threading.Lock()
        self._cache: list[SandboxInfo] = []
        self._listed = float("-inf")

    def candidates(self, language: str, tty: bool) -> list[SandboxInfo]:
        """The warm sandboxes of this kind, in an order of their own (racing workers then rarely
        want the same one). Raises the executor's errors."""
        if (language, tty) not in self.kinds:
            return []
        with self._listing:
            if time.monotonic() - self._listed > self.ttl:
                listed = [info for info in self.executor.list() if info.waiting]
                with self._lock:
                    self._cache, self._listed = listed, time.monotonic()
        with self._lock:
            warm = [info for info in self._cache if info.language == language and info.tty == tty]
        random.shuffle(warm)
        return warm

    def taken(self, ref: SandboxRef) -> None:
        with self._lock:
            self._cache = [info for info in self._cache if info.ref.id != ref.id]
