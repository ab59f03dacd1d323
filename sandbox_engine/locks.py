"""Lock files that serialise work across a server's worker processes."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .statedir import private_opener

SPIN = 0.0005


@contextmanager
def exclusive(path: str) -> Iterator[None]:
    """Hold an exclusive flock on path for the block; the file is created if missing.

    Never a blocking flock: under gevent it would stall every greenlet of the worker while
    another process holds the lock, so this polls, yielding between tries (time.sleep is
    gevent's sleep once the worker is patched).
    """
    with open(path, "a", opener=private_opener) as lock:
        lock_polling(lock.fileno())
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def lock_polling(fd: int) -> None:
    """Take an exclusive flock on an open file, polling (see exclusive)."""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(SPIN)
