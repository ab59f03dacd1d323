"""Claims: which attachment drives a session's sandbox, decided without the runtime when it can be.

A sandbox a session took (a warm one, or one made for it: see pool_members) is claimed in the state
store, by one atomic rename of its entry, and driven at once; the runtime's name follows on a
thread of its own, off the client's path, and only for a session still running NAMING_DELAY after
its start: Docker's rename costs a core for ten to twenty milliseconds under load, which a short
session's first output and the next session's start would wait for, and a sandbox about to be
removed needs no name. Until it has, the store says who claimed it: the reaper reads that (an owner
that died, a session that expired), and so does every later claimer, who is refused. The runtime is
also asked then whether the sandbox still runs: a warm one that died while it waited is removed,
and its session ends with internal_error. Any other sandbox (the store no longer has its entry, or
its runtime names no sandbox by a name of its own: Kubernetes' made for a session) is claimed by
the runtime (Executor.claim).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .executor import AlreadyClaimed, Executor, ExecutorError, Sandbox, SandboxRef, SandboxSpec
from .pool_members import Members

log = logging.getLogger(__name__)

# How long shutdown waits for the runtime's names of claims still under way.
NAMING_WAIT = 5.0
# How long after its start a session's claim waits before the runtime learns of it.
NAMING_DELAY = 2.0


class Claims:
    def __init__(
        self, executor: Executor, members: Members, owner: Callable[[], str], delay: float = NAMING_DELAY
    ) -> None:
        self.executor = executor
        self.members = members
        self._owner = owner
        self.delay = delay
        # Claims made in the store whose runtime name is still to follow, by session.
        self._unnamed: dict[str, tuple[SandboxRef, Sandbox, float]] = {}
        # Of those, the ones whose name waits for the delay: set to name at once (or to let go).
        self._waits: dict[str, threading.Event] = {}
        # Claims whose program ended, their sandbox's removal still to come: never named now,
        # their store entry kept until removed() (until then the reaper reads it as the
        # session's, which a removal under way holds: see Engine.is_live).
        self._ending: dict[str, SandboxRef] = {}
        self._naming: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def made(self, spec: SandboxSpec) -> SandboxRef:
        """A sandbox made for its session, where no warm one was taken. Under a name no session has
        yet (Docker's), it is entered in the store as taken by the session, as a warm one is, so
        that its claim is no runtime call either."""
        ref = self.executor.create(spec)
        if ref.name and spec.session_id is not None:
            self.members.adopt(ref, spec.session_id)
        return ref

    def claim(self, session_id: str, ref: SandboxRef | None) -> Sandbox:
        """The session's sandbox, claimed for this worker; AlreadyClaimed or SandboxNotFound as
        Executor.claim. Call named() once the program started (or it ended)."""
        if ref is not None and ref.name:
            if self.members.claim(ref.id, session_id, self._owner()):
                sandbox = self.executor.sandbox(ref, session_id)
                with self._lock:
                    self._unnamed[session_id] = (ref, sandbox, time.time())
                return sandbox
            if any(t.ref.id == ref.id and t.owner for t in self.members.taken()):
                raise AlreadyClaimed(session_id)
        # Not a warm one, or its claim moved on to the runtime's name already.
        sandbox = self.executor.claim(session_id, self._owner(), ref)
        if ref is not None and ref.name:
            self.members.settle(ref.id)
        return sandbox

    def named(self, session_id: str) -> None:
        """Let the runtime's name of a claim made in the store follow, on a thread of its own,
        after the delay unless the session let its sandbox go first (see removed)."""
        with self._lock:
            if session_id not in self._unnamed or session_id in self._waits:
                return
            wait = self._waits[session_id] = threading.Event()
            thread = threading.Thread(
                target=self._name_later, args=(session_id, wait), name=f"se-claim-{session_id}", daemon=True
            )
            self._naming.add(thread)
        thread.start()

    def ended(self, session_id: str) -> None:
        """The session's program ended, its sandbox's removal is still to come (see removals):
        no runtime name need follow; the store's word stays until removed()."""
        with self._lock:
            claimed = self._unnamed.pop(session_id, None)
            wait = self._waits.pop(session_id, None)
            if claimed is not None:
                self._ending[session_id] = claimed[0]
        if wait is not None:
            wait.set()

    def removed(self, session_id: str) -> None:
        """The session let its claimed sandbox go (removed, or about to be): no runtime name
        need follow, the store's word is done."""
        self.ended(session_id)
        with self._lock:
            ref = self._ending.pop(session_id, None)
        if ref is not None:
            self.members.settle(ref.id)

    def _name_later(self, session_id: str, wait: threading.Event) -> None:
        try:
            wait.wait(self.delay)
            with self._lock:
                self._waits.pop(session_id, None)
                claimed = self._unnamed.pop(session_id, None)
            if claimed is not None:
                self._name(session_id, *claimed)
        finally:
            with self._lock:
                self._naming.discard(threading.current_thread())

    def _name(self, session_id: str, ref: SandboxRef, sandbox: Sandbox, claimed_at: float) -> None:
        try:
            running = self.executor.name_claim(session_id, self._owner(), ref, claimed_at)
            # Named (or gone): the store's word is no longer needed. Had the runtime failed, the
            # entry stays, and the reaper settles it once the name changed or the sandbox is gone.
            self.members.settle(ref.id)
            if not running:
                # A warm sandbox that died while it waited: its streams, which would never end,
                # are closed with it, and its run ends as one that lost its sandbox.
                log.warning("the sandbox of %s had stopped before it was claimed", session_id)
                sandbox.remove()
        except ExecutorError as exc:
            log.warning("the claim of %s is known to the state store only: %s", session_id, exc)

    def join(self, timeout: float = NAMING_WAIT) -> None:
        """Name every claim still unnamed now, and wait for them (at shutdown)."""
        for session_id in list(self._unnamed):
            self.named(session_id)
        with self._lock:
            waits, threads = list(self._waits.values()), list(self._naming)
        for wait in waits:
            wait.set()
        for thread in threads:
            thread.join(timeout)
