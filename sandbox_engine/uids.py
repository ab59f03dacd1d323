"""Host uids for sandboxes, leased from a range the server owns: one uid per live sandbox.

The kernel counts some resources per user of the whole host rather than per container: inotify
instances (fs.inotify.max_user_instances), POSIX message queue bytes (RLIMIT_MSGQUEUE), queued
signals (RLIMIT_SIGPENDING). Sandboxes sharing one uid share those quotas, so one of them could
exhaust them for every other. Each live sandbox therefore runs as a uid of its own.

A lease is a file named by its uid in a directory that every engine of the host shares, whatever
its instance or state directory. It is created with O_EXCL, so of any number of takers (workers,
or engines of other instances) exactly one gets a uid. It names its instance and, once the
sandbox exists, the sandbox (the runtime's id for it); until then its taker holds an flock on it.
It is released by whoever removed the sandbox, or reclaimed once the sandbox is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .locks import exclusive, lock_polling

# Releases and reclaims are serialised by this lock file (taking needs none: O_EXCL makes it
# exact), so that neither removes a lease taken again since it was read.
_LOCK = ".lock"


class RangeExhausted(Exception):
    """Every uid of the range is leased."""


@dataclass(frozen=True)
class Lease:
    uid: int
    instance: str
    # The runtime's id for the sandbox; "" while the sandbox is being created.
    holder: str


class Taking:
    """A uid taken for a sandbox being created: `bind` it to the sandbox once it exists."""

    def __init__(self, uid: int, instance: str, fd: int) -> None:
        self.uid = uid
        self._instance = instance
        self._fd = fd
        self.bound = False

    def bind(self, holder: str) -> None:
        """The sandbox exists: the lease is its until released."""
        _write(self._fd, Lease(self.uid, self._instance, holder))
        self.bound = True


class UidLeases:
    """The leases of one host's uid range, in `directory` (created if missing)."""

    def __init__(self, directory: str, uids: range) -> None:
        self.directory = directory
        self.uids = uids
        os.makedirs(directory, mode=0o700, exist_ok=True)

    def _path(self, uid: int) -> str:
        return os.path.join(self.directory, str(uid))

    @contextmanager
    def take(self, instance: str) -> Iterator[Taking]:
        """A free uid, held for the block, in which the sandbox is created and `bind`s it; given
        back at the end of the block unless bound. RangeExhausted when no uid is free."""
        taking = self._take(instance)
        try:
            yield taking
        finally:
            if not taking.bound:
                # Unlinked while still locked: no reclaimer can be looking at it.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path(taking.uid))
            os.close(taking._fd)  # and with it the flock

    def _take(self, instance: str) -> Taking:
        leased = {int(name) for name in os.listdir(self.directory) if name.isdigit()}
        # From a random place in the range: racing takers seldom want the same uid.
        start = random.randrange(len(self.uids))
        for i in range(len(self.uids)):
            uid = self.uids[(start + i) % len(self.uids)]
            if uid in leased:
                continue
            try:
                fd = os.open(self._path(uid), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
            except FileExistsError:
                continue  # another taker was quicker
            try:
                _lock(fd)
                _write(fd, Lease(uid, instance, ""))
            except BaseException:
                os.unlink(self._path(uid))
                os.close(fd)
                raise
            return Taking(uid, instance, fd)
        raise RangeExhausted(f"every uid of {self.uids.start}-{self.uids.stop - 1} is in use")

    def release(self, uid: int, holder: str) -> None:
        """The sandbox `holder` is gone: its uid is free again. A lease held by another sandbox
        (the uid was reclaimed and taken again meanwhile) is left alone."""
        with exclusive(os.path.join(self.directory, _LOCK)):
            lease = self.read(uid)
            if lease is not None and lease.holder == holder:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path(uid))

    def read(self, uid: int) -> Lease | None:
        try:
            with open(self._path(uid)) as f:
                return Lease(**json.load(f))
        except (FileNotFoundError, ValueError, TypeError):
            return None  # free, or being written

    def leases(self, instance: str | None = None) -> list[Lease]:
        """The leases of the range (of one instance), as they are now."""
        found = [self.read(int(name)) for name in os.listdir(self.directory) if name.isdigit()]
        return [lease for lease in found if lease is not None and instance in (None, lease.instance)]

    def reclaim(self, instance: str, present: Collection[str], listed_at: float) -> list[int]:
        """Release the instance's leases whose sandbox is not among `present` (the runtime's ids
        of the instance's sandboxes, as listed at `listed_at`), and those a dead taker left.

        A lease bound after the listing began is never reclaimed: its sandbox may be too new to be
        listed. Nor is one whose taker still holds it (its sandbox is being created: the taker
        locks a lease before it writes one, so an unlocked lease with content is bound or its
        taker is gone). Returns the uids reclaimed.
        """
        reclaimed = []
        for name in os.listdir(self.directory):
            if not name.isdigit():
                continue
            uid = int(name)
            with self._unheld(uid) as (lease, written_at):
                if lease is None or lease.instance != instance:
                    continue
                # Unbound and unheld: its taker died. Bound: compared with a listing made after it.
                if lease.holder and (lease.holder in present or written_at >= listed_at - 1.0):
                    continue
                with exclusive(os.path.join(self.directory, _LOCK)):
                    if self.read(uid) == lease:
                        os.unlink(self._path(uid))
                        reclaimed.append(uid)
        return reclaimed

    @contextmanager
    def _unheld(self, uid: int) -> Iterator[tuple[Lease | None, float]]:
        """A lease and when it was last written, with its flock held for the block; (None, 0)
        when it is gone or its taker holds it."""
        try:
            fd = os.open(self._path(uid), os.O_RDONLY)
        except FileNotFoundError:
            yield None, 0.0
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None, 0.0
                return
            yield self.read(uid), os.fstat(fd).st_mtime
        finally:
            os.close(fd)


def _lock(fd: int) -> None:
    """Lock a lease just made. A reclaimer may be looking at it (it finds it empty and lets go at
    once), so this polls, never a blocking flock (see locks.exclusive)."""
    lock_polling(fd)


def _write(fd: int, lease: Lease) -> None:
    data = json.dumps({"uid": lease.uid, "instance": lease.instance, "holder": lease.holder}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
