"""The reaper: a thread per worker that removes sandboxes nobody will ever end.

It expires sessions created but never attached once the idle timeout passes, and removes what
the executor calls orphaned: sandboxes whose claiming worker has died, sandboxes this worker
claimed but no longer runs (a removal that failed while the runtime was away), and dead warm
sandboxes. It reconciles the warm pool's members (see pool_members) with the runtime: a warm
sandbox a session took is that session's, claimed by a worker if the store says so; one neither
offered nor taken, two passes running, was left by a refiller or taker that died; an entry whose
sandbox no longer has its pool's name is settled. It also forgets the records of ended sessions past
their age or count, and once a minute lets the executor free what removed sandboxes still hold
(their uids). Reaping and pruning are idempotent, so every worker's reaper may run at once.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import replace
from typing import Protocol

from .config import Config
from .errors import EngineError, Kind, runtime_error
from .executor import Executor, ExecutorError, RuntimeUnavailable, SandboxInfo, SandboxRef
from .pool_members import Members
from .states import Reason
from .store import Store

log = logging.getLogger(__name__)

INTERVAL = 1.0
# The full sweep of the state directory under the cheap prune of every pass.
SWEEP_EVERY = 60.0
# How often a reaper frees what sandboxes removed by someone else still hold (their uids).
RECLAIM_EVERY = 60.0
# A warm sandbox is offered within this long of its creation (see _reconciled).
STUCK = 60.0


class Sessions(Protocol):
    """What the reaper needs of the worker's engine."""

    @property
    def owner(self) -> str:
        """This worker's name on the sandboxes it claims."""

    def is_live(self, session_id: str) -> bool:
        """Whether this worker runs the session, or is claiming it now."""

    def expire(self, session_id: str, reason: Reason, ref: SandboxRef | None = None) -> None:
        """End a session no client attached to, unless one attaches first; `ref`: its sandbox."""

    def forget_ended(self) -> None:
        """Let go of the replay buffers of sessions whose grace after their end is over."""

    def runtime_answered(self, error: EngineError | None) -> None:
        """What this pass found of the runtime: None when it answered, else why it did not."""


def owner_alive(owner: str) -> bool:
    """Owners are 'p<pid>' of a worker on this host (one server's workers share a host)."""
    if not owner.startswith("p") or not owner[1:].isdigit():
        return False
    try:
        os.kill(int(owner[1:]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Reaper:
    def __init__(
        self,
        executor: Executor,
        records: Store,
        sessions: Sessions,
        idle_timeout: float,
        keep_records: float,
        max_records: int = Config.max_records,
        max_age: float = math.inf,
        interval: float = INTERVAL,
        members: Members | None = None,
    ) -> None:
        """`idle_timeout` is how long a session may wait for its client; records of ended
        sessions are kept `keep_records` seconds, and at most `max_records` of them; no session
        outlives `max_age` seconds from its creation, whoever holds it."""
        self.executor = executor
        self.records = records
        self.sessions = sessions
        self.idle_timeout = idle_timeout
        self.keep_records = keep_records
        self.max_records = max_records
        self.max_age = max_age
        self.interval = interval
        self.members = members
        # Pool sandboxes neither offered nor taken at the last pass (see _unowned).
        self._unowned: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_sweep = 0.0
        self._last_reclaim = 0.0

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="se-reaper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop, and wait for a pass under way to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("reaper: the pass under way did not end within %.0f s", timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.run_once()

    def run_once(self) -> None:
        """One pass: reap, then prune, each whatever became of the other."""
        try:
            self.records.announce()
        except Exception:
            log.exception("announcing this worker failed")
        try:
            self.reap_once()
            self.sessions.runtime_answered(None)
        except ExecutorError as exc:
            log.debug("reaper: runtime unavailable: %s", exc)
            if isinstance(exc, RuntimeUnavailable):
                self.sessions.runtime_answered(runtime_error(exc))
        except EngineError as exc:  # an executor failure, as the engine reports it
            log.debug("reaper: %s", exc.message)
            if exc.kind is Kind.RUNTIME_UNAVAILABLE:
                self.sessions.runtime_answered(exc)
        except Exception:
            log.exception("reaper pass failed")
        # Reaping stops while the runtime is away; records of sessions ending meanwhile do not.
        try:
            self.prune_once()
        except Exception:
            log.exception("pruning records failed")

    def reap_once(self) -> None:
        now = time.time()
        for info in self._reconciled(self.executor.list(), now):
            # Decided from what is true after the listing: a session claimed since the last pass
            # is live by the time its container is seen claimed.
            if self.executor.orphaned(info, self._alive, now):
                self._remove(info, Reason.INTERNAL_ERROR)
            elif self._overdue(info, now):
                self._remove(info, Reason.TIMEOUT)
            elif not info.claimed and not info.pooled and self._expired(info, now):
                log.info("reaping session %s (idle_timeout)", info.session_id)
                self.sessions.expire(info.session_id, Reason.IDLE_TIMEOUT, info.ref)
        if now - self._last_reclaim > RECLAIM_EVERY:
            self._last_reclaim = now
            self.executor.reclaim()

    def _reconciled(self, listed: list[SandboxInfo], listed_at: float) -> list[SandboxInfo]:
        """The listing as the pool's members tell it: a taken warm sandbox as its session's; one
        nobody owns twice running removed now (a take or a claim moves a sandbox on within a
        pass: one seen so twice was left by someone who died)."""
        if self.members is None:
            return listed
        # Read after the listing: what was offered or taken before it is known here.
        waiting = {ref.id for ref in self.members.waiting()}
        taken = self.members.taken()
        entries = {t.ref.id: t for t in taken}
        pool_named = {info.ref.id for info in listed if info.pooled}
        for t in taken:
            if t.at < listed_at and t.ref.id not in pool_named:
                self.members.settle(t.ref.id)  # claimed under its session's name, or gone
        unowned, reconciled = set(), []
        for info in listed:
            if info.pooled and (t := entries.get(info.ref.id)):
                # Its session's, claimed by its owner if claimed; its reference as taken names it
                # by its pool's name, which the runtime's claim renames.
                info = replace(info, ref=t.ref, session_id=t.session_id, pooled=False, owner=t.owner)
                info = replace(info, claimed=t.owner is not None)
            elif info.pooled and not info.exited and info.ref.id not in waiting:
                unowned.add(info.ref.id)
                if info.ref.id in self._unowned and listed_at - info.created_at > STUCK:
                    log.info("reaping pooled sandbox %s: offered to nobody, taken by nobody", info.name)
                    self.executor.remove_sandbox(info)
                continue
            reconciled.append(info)
        self._unowned = unowned
        return reconciled

    def prune_once(self) -> None:
        """Forget ended sessions' records past their age or count; now and then, sweep."""
        self.records.prune(self.keep_records, self.max_records)
        # Else an ended session's buffer would wait for the next attach to this worker.
        self.sessions.forget_ended()
        now = time.time()
        if now - self._last_sweep > SWEEP_EVERY:
            self._last_sweep = now
            self.records.sweep(self.keep_records)

    def _alive(self, owner: str, session_id: str) -> bool:
        if owner == self.sessions.owner:
            return self.sessions.is_live(session_id)
        return owner_alive(owner)

    def _remove(self, info: SandboxInfo, reason: Reason) -> None:
        if info.pooled:
            log.info("reaping pooled sandbox %s", info.name)
            self.executor.remove_sandbox(info)
            return
        record = self.records.read(info.session_id)
        if record is not None and record.final:
            # Its end is recorded: only its sandbox is left (its removal failed, or ran since the
            # listing). No other ending is asked for, nor said in the log.
            log.info("removing the sandbox of ended session %s", info.session_id)
            self.executor.remove_sandbox(info)
            return
        # An ending already decided (a kill, an expiry whose removal failed) keeps its reason.
        reason = self.records.requested_end(info.session_id) or reason
        log.info("reaping session %s (%s)", info.session_id, reason)
        self.records.end(info.session_id, reason, lambda: self.executor.remove_sandbox(info))

    def _overdue(self, info: SandboxInfo, now: float) -> bool:
        """A claimed session past the age no run may reach: its owner, alive or not, failed to
        end it (the run's own hard deadline comes well before)."""
        if not info.claimed or info.pooled:
            return False
        record = self.records.read(info.session_id)
        return record is not None and now - record.created_at > self.max_age

    def _expired(self, info: SandboxInfo, now: float) -> bool:
        """A session nobody attached to within the idle timeout."""
        # A pooled sandbox taken for a session is older than the session: ask the record.
        record = self.records.read(info.session_id)
        created = record.created_at if record is not None else info.created_at
        return now - created > self.idle_timeout


def reap_instance(executor: Executor, records: Store, reason: Reason = Reason.INTERNAL_ERROR) -> int:
    """Remove every sandbox of this instance, and free what removed ones still held: at server
    start, what a crash left behind. Nothing while another server shares the records (replicas
    with --redis-url): its sandboxes are its own, and its reapers take what a dead one left."""
    if records.others_alive():
        return 0
    count = 0
    # A sandbox a session took in the store (a warm one, or one made for it) keeps a pool's name
    # until its claim is named: the store says whose it is, and that session ends too.
    taken = {t.ref.id: t.session_id for t in records.members().taken()}
    for info in executor.list():
        session_id = taken.get(info.ref.id) if info.pooled else info.session_id
        if session_id:
            records.end(session_id, reason, lambda info=info: executor.remove_sandbox(info))
        else:
            executor.remove_sandbox(info)
        count += 1
    executor.reclaim()
    return count
