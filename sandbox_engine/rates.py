"""Requests per minute of each API key, counted exactly across the server's workers.

Each key has a small file of 60 counters, one per second of the last minute, read and written
under a lock on the file itself: a request is taken when fewer than the key's rate were taken in
the last 60 whole seconds (this one included), whichever worker took them. Per-worker counters
would let each worker's clients have the whole rate; a file costs a lock and two small system
calls per request instead.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from typing import Protocol

from .locks import lock_polling
from .statedir import FILE_MODE, private_directory

WINDOW = 60
# One slot a second: (the second it counts, how many requests in it).
_SLOT = struct.Struct("<qI")
_SIZE = _SLOT.size * WINDOW


class Rates(Protocol):
    """Each key's requests a minute: here in files, across replicas in Redis (see redis_keys)."""

    def take(self, name: str, rate: int) -> int | None: ...


class RateLimits:
    def __init__(self, directory: str, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self._clock = clock
        private_directory(directory)

    def take(self, name: str, rate: int) -> int | None:
        """Count one request of key `name` if its rate allows it: None. If not, nothing is counted
        and the answer is how many seconds until one more request would be taken."""
        fd = os.open(os.path.join(self.directory, name), os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            lock_polling(fd)
            now = int(self._clock())
            slots = _read(os.pread(fd, _SIZE, 0))
            live = {second: count for second, count in slots if now - WINDOW < second <= now}
            if sum(live.values()) >= rate:
                return _wait(live, rate, now)
            live[now] = live.get(now, 0) + 1
            os.pwrite(fd, _write(live), 0)
            return None
        finally:
            os.close(fd)  # which drops the lock


def _read(data: bytes) -> list[tuple[int, int]]:
    if len(data) < _SIZE:
        return []  # new, or written by nobody yet
    return [_SLOT.unpack_from(data, i * _SLOT.size) for i in range(WINDOW)]


def _write(live: dict[int, int]) -> bytes:
    slots = [(0, 0)] * WINDOW
    for second, count in live.items():
        slots[second % WINDOW] = (second, count)
    return b"".join(_SLOT.pack(*slot) for slot in slots)


def _wait(live: dict[int, int], rate: int, now: int) -> int:
    """Seconds until the oldest requests leave the window and fewer than rate are left in it."""
    left = sum(live.values())
    for second in sorted(live):
        left -= live[second]
        if left < rate:
            return second + WINDOW - now
    return 1
