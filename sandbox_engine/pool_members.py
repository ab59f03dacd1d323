"""The warm pool's members as the state store knows them, so that a session takes one without
asking the runtime: the take is one atomic claim here, and the runtime hears of it only later
(see claims). A sandbox made for its session, where no warm one waits, is entered here as taken
at once (adopt), so that its claim is made the same way.

The refiller adds a sandbox once it is started and its launcher is ready; a session takes one by
renaming its entry, which exactly one taker can do, and its client's attachment claims it by
renaming that entry again, to one that names the claiming worker. The runtime learns of the
claim afterwards, off the client's path (see claims): until then the entries say whose the
sandbox is, so that whoever reaps after a crash still knows. The reaper reconciles the entries
with the runtime's listing, off the sessions' path.

`FileMembers` keeps them in the instance's state directory, shared by every worker of a server;
`redis_members.RedisMembers` keeps them in Redis, shared by replicas (`--redis-url`).
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import json
import os
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from .executor import SandboxRef
from .statedir import private_directory, private_opener

_TAKEN = "taken"
_CLAIMED = "claimed"
_SUFFIX = ".json"


@dataclass(frozen=True)
class Taken:
    """A warm sandbox a session took: its reference, and the session's id."""

    ref: SandboxRef
    session_id: str
    # When it was taken, or claimed (time.time()).
    at: float
    # The worker that claimed it (see Executor.claim's owner); None while only taken.
    owner: str | None = None


class Members(abc.ABC):
    @abc.abstractmethod
    def add(self, ref: SandboxRef) -> None:
        """Offer a started, ready warm sandbox to sessions."""

    @abc.abstractmethod
    def take(self, language: str, tty: bool, session_id: str) -> SandboxRef | None:
        """One waiting sandbox of this kind, now the session's; None if none is left. Of racing
        takers of one sandbox, exactly one gets it."""

    @abc.abstractmethod
    def adopt(self, ref: SandboxRef, session_id: str) -> None:
        """A sandbox made for this session (not the pool's), known as one the session took: its
        client claims it as a warm one's (see claims), and the reaper reads whose it is."""

    @abc.abstractmethod
    def claim(self, container_id: str, session_id: str, owner: str) -> bool:
        """Claim a sandbox the session took, for one attachment: False for every later one."""

    @abc.abstractmethod
    def waiting(self) -> list[SandboxRef]:
        """Every sandbox offered and not taken."""

    @abc.abstractmethod
    def taken(self) -> list[Taken]:
        """Every sandbox taken or claimed, and not yet settled (see settle)."""

    @abc.abstractmethod
    def drop(self, container_id: str) -> bool:
        """Withdraw a waiting sandbox (it died); False when a session took it first."""

    @abc.abstractmethod
    def settle(self, container_id: str) -> None:
        """Forget a taken or claimed sandbox: the runtime knows it by its session's name now, or
        it is gone."""

    @abc.abstractmethod
    def refilling(self) -> contextlib.AbstractContextManager[bool]:
        """The refiller's lock, held by one refiller of all who share the members: True if this
        one holds it (until the block ends), False if another does."""


class FileMembers(Members):
    """One file per member, `<kind>/<container id>.json`; a take renames it to
    `taken/<container id>.<session id>.json`, a claim to `claimed/<container id>.<session
    id>.<owner>.json`. rename(2) within one file system is atomic: a second taker or claimer
    finds no source."""

    def __init__(self, directory: str) -> None:
        self.directory = os.path.join(directory, "pool")
        private_directory(self.directory)
        private_directory(os.path.join(self.directory, _TAKEN))
        private_directory(os.path.join(self.directory, _CLAIMED))

    def _kind(self, language: str, tty: bool) -> str:
        path = os.path.join(self.directory, f"{language}.tty" if tty else language)
        if not os.path.isdir(path):
            private_directory(path)
        return path

    def add(self, ref: SandboxRef) -> None:
        kind = self._kind(ref.language, ref.tty)
        _place(ref, kind, os.path.join(kind, ref.id + _SUFFIX))

    def take(self, language: str, tty: bool, session_id: str) -> SandboxRef | None:
        kind = self._kind(language, tty)
        names = [name for name in os.listdir(kind) if name.endswith(_SUFFIX)]
        # In an order of its own: racing takers then rarely want the same one.
        random.shuffle(names)
        for name in names:
            container_id = name[: -len(_SUFFIX)]
            target = os.path.join(self.directory, _TAKEN, f"{container_id}.{session_id}{_SUFFIX}")
            try:
                os.rename(os.path.join(kind, name), target)
            except FileNotFoundError:
                continue  # another session took it first
            # The time of the take, for the reaper (see Taken.at); rename keeps the offer's.
            os.utime(target)
            ref = _read(target)
            if ref is not None:
                return ref
        return None

    def adopt(self, ref: SandboxRef, session_id: str) -> None:
        _place(ref, self.directory, os.path.join(self.directory, _TAKEN, f"{ref.id}.{session_id}{_SUFFIX}"))

    def claim(self, container_id: str, session_id: str, owner: str) -> bool:
        name = f"{container_id}.{session_id}"
        try:
            os.rename(
                os.path.join(self.directory, _TAKEN, name + _SUFFIX),
                os.path.join(self.directory, _CLAIMED, f"{name}.{owner}{_SUFFIX}"),
            )
        except FileNotFoundError:
            return False
        return True

    def waiting(self) -> list[SandboxRef]:
        refs = []
        for kind in os.listdir(self.directory):
            if kind in (_TAKEN, _CLAIMED):
                continue
            with contextlib.suppress(NotADirectoryError, FileNotFoundError):
                for name in os.listdir(os.path.join(self.directory, kind)):
                    if name.endswith(_SUFFIX) and (ref := _read(os.path.join(self.directory, kind, name))):
                        refs.append(ref)
        return refs

    def taken(self) -> list[Taken]:
        found = []
        # Claimed first: an entry that moves on from taken/ meanwhile is then seen in neither
        # list, never in both; the reaper takes two looks before it acts on that (see reaper).
        for directory in (_CLAIMED, _TAKEN):
            directory = os.path.join(self.directory, directory)
            for name in os.listdir(directory):
                container_id, session_id, owner = ([*name[: -len(_SUFFIX)].split("."), None, None])[:3]
                path = os.path.join(directory, name)
                ref = _read(path) if name.endswith(_SUFFIX) else None
                if ref is not None and session_id and ref.id == container_id:
                    with contextlib.suppress(FileNotFoundError):
                        found.append(Taken(ref, session_id, os.stat(path).st_mtime, owner))
        return found

    def drop(self, container_id: str) -> bool:
        for kind in os.listdir(self.directory):
            if kind in (_TAKEN, _CLAIMED):
                continue
            try:
                os.unlink(os.path.join(self.directory, kind, container_id + _SUFFIX))
                return True
            except (FileNotFoundError, NotADirectoryError):
                continue
        return False

    def settle(self, container_id: str) -> None:
        for directory in (_TAKEN, _CLAIMED):
            directory = os.path.join(self.directory, directory)
            for name in os.listdir(directory):
                if name.startswith(container_id + "."):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(directory, name))

    @contextlib.contextmanager
    def refilling(self) -> Iterator[bool]:
        with open(os.path.join(self.directory, ".lock"), "a", opener=private_opener) as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False  # another worker is refilling
                return
            yield True


def _place(ref: SandboxRef, aside: str, path: str) -> None:
    """Write an entry at `path`, written in `aside` (the same file system) and renamed in place:
    a taker or the reaper never reads half an entry."""
    partial = os.path.join(aside, f".{ref.id}.partial")
    with open(partial, "w", opener=private_opener) as f:
        json.dump(asdict(ref), f)
    os.rename(partial, path)


def _read(path: str) -> SandboxRef | None:
    try:
        with open(path) as f:
            return SandboxRef(**json.load(f))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        return None  # not an entry of ours
