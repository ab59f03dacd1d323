"""The engine: creates sessions, admits them against capacity, attaches clients, ends them.

One engine per worker process (see worker, which also runs its pool and reaper). It keeps only
the runs this worker drives; everything another worker must know lives with the sandbox (its
claim) or in the record store.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from .catalog import Catalog
from .claims import Claims
from .config import Config
from .errors import EngineError, Kind, runtime_error
from .executor import (
    AlreadyClaimed,
    Executor,
    ExecutorError,
    Sandbox,
    SandboxNotFound,
    SandboxRef,
    SandboxSpec,
    Terminal,
)
from .hub import Hubs, SessionHub, Subscriber
from .keys import Key
from .languages import LANGUAGES, LanguageSpec
from .metrics import Metrics
from .pool_members import Members
from .protocol import shown
from .records import Admission, Record
from .removals import Removals
from .session import Outcome, SessionRun
from .specs import checked_program, new_record, sandbox_spec, session_limits
from .states import Reason, State
from .store import Store

log = logging.getLogger(__name__)

# How long shutdown waits for runs to send their final state before removing what is left.
SHUTDOWN_GRACE = 5.0


class Engine:
    def __init__(
        self,
        config: Config,
        executor: Executor,
        records: Store,
        languages: dict[str, LanguageSpec] | None = None,
        metrics: Metrics | None = None,
        members: Members | None = None,
    ) -> None:
        self.config = config
        self.executor = executor
        self.records = records
        self.metrics = metrics if metrics is not None else Metrics()
        self.languages = languages if languages is not None else LANGUAGES
        self._runs: dict[str, SessionRun] = {}
        # Who hears each run: its client, its replay buffer, its reconnect grace (see hub).
        self.hubs = Hubs(config.replay_limit, config.reconnect_grace, config.max_watchers)
        # Claims in progress, counted per session (two attachments may race in one worker):
        # the reaper must not take a claimed container that has no run yet for a leftover.
        self._claiming: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.catalog = Catalog(self.languages, executor)
        self.pool_sizes = config.pool_sizes(list(self.languages))
        # Told when a session took a warm sandbox, so that the pool refills (see worker).
        self.on_take: Callable[[], None] = lambda: None
        # The warm pool's members, taken and claimed without a runtime call (see pool_members).
        self.members = members if members is not None else records.members()
        self._claims = Claims(executor, self.members, lambda: self.owner)
        # Ended sessions' sandboxes, removed once sessions stop arriving (see removals).
        self.removals = Removals()
        self._shutting_down = False
        self._unanswered: EngineError | None = None

    def runtime_answered(self, error: EngineError | None) -> None:
        self._unanswered = error

    @property
    def owner(self) -> str:
        """This worker's name on the containers it claims; the reaper checks it is alive."""
        return f"p{os.getpid()}"

    # --- sessions ------------------------------------------------------------------------
    def create_session(
        self,
        language: str,
        code: str | bytes,
        terminal: Terminal | None = None,
        merge_stderr: bool = False,
        batch: bool = False,
        key: Key | None = None,
    ) -> str:
        """A new session and its sandbox (from the pool when one is warm). A `batch` session is
        a batch run's (see runs), which no client may attach to. The API key that asks for it
        owns it, within the key's own limit of live sessions and runs."""
        spec, source = checked_program(self.languages, self.config.max_code_size, language, code)
        if self._shutting_down:
            raise EngineError(Kind.RUNTIME_UNAVAILABLE, "the server is shutting down")
        if self._unanswered is not None:
            # Found away by the reaper's last pass: a warm take would hand out an unreachable sandbox.
            raise self._unanswered
        session_id = str(uuid.uuid4())
        tty = terminal is not None
        record = new_record(session_id, spec.id, terminal, merge_stderr, batch, key)
        # The record and the program first: whoever finds the container must find them too.
        admission = self.records.admit(
            record, self.config.max_sessions, key.max_sessions if key is not None else None
        )
        if admission is not Admission.ADMITTED:
            raise _refusal(admission, key, self.config)
        self.records.write_code(session_id, source)
        try:
            # A warm sandbox is taken in the state store alone: no runtime call (see pool_members).
            ref = self.members.take(spec.id, tty, session_id) if (spec.id, tty) in self.pool_sizes else None
            if ref is not None:
                self.on_take()
            ref = ref or _call(self._claims.made, sandbox_spec(self.config, spec, session_id, tty))
        except EngineError:
            self.records.forget(session_id)
            raise
        self.records.write(replace(record, sandbox=ref))
        self.metrics.started(spec.id, batch, ref.running)
        return session_id

    def sandbox_spec(self, language: str, tty: bool) -> SandboxSpec:
        """A warm pool's sandbox of this language (see specs.sandbox_spec)."""
        return sandbox_spec(self.config, self.languages[language], None, tty)

    def describe(self, session_id: str, key: Key | None = None) -> dict:
        return _owned(_session_record(self.records, session_id), key).public()

    @contextmanager
    def batch_sandbox(self, session_id: str) -> Iterator[Sandbox]:
        """A batch run's sandbox, claimed by this worker for as long as the run uses it. Its
        record says RUNNING meanwhile; the run records its own end, and removes the sandbox
        (off its client's path: see runs), or the reaper does once the claim is let go."""
        record = self.records.read(session_id)
        if record is None or not record.batch:
            raise EngineError(Kind.NOT_FOUND, f"no run {shown(session_id)}")
        with self._claim(session_id), self.metrics.run_active():
            try:
                sandbox = _call(self._claims.claim, session_id, record.sandbox)
            except (AlreadyClaimed, SandboxNotFound):
                raise EngineError(Kind.SESSION_ENDED, f"run {session_id} has ended") from None
            self._claims.named(session_id)
            self.records.write(replace(record, state=State.RUNNING, started_at=time.time()))
            try:
                yield sandbox
            except ExecutorError as exc:
                raise runtime_error(exc) from exc
            finally:
                self.records.forget_code(session_id)
                # The run removes it soon, off its client's path (see runs): no name need follow,
                # and its store entry stays until then (see remove_later).
                self._claims.ended(session_id)

    def check_attachable(self, session_id: str, resume: int | None = None, takeover: bool = False) -> bool:
        """Refuse before the handshake what can be: unknown, taken, over. True: relay the resume."""
        record = _session_record(self.records, session_id)
        if resume is not None:
            hub = self.hubs.get(session_id)
            if hub is not None and not takeover and not hub.ended and hub.attached:
                raise _already_attached(session_id)
            return hub is None
        if record.final:
            raise EngineError(Kind.SESSION_ENDED, f"session {session_id} has ended ({record.reason})")
        ending = self.records.requested_end(session_id)
        if ending is not None:
            raise EngineError(Kind.SESSION_ENDED, f"session {session_id} has ended ({ending})")
        if record.state is not State.CREATED:
            raise _already_attached(session_id)
        return False

    def attach(self, session_id: str, client: Subscriber) -> SessionRun:
        """Claim the session's sandbox, attach the client to its hub and start the program.
        Raises EngineError if refused."""
        record = _session_record(self.records, session_id)
        with self._claim(session_id):
            try:
                sandbox = _call(self._claims.claim, session_id, record.sandbox)
            except AlreadyClaimed:
                if self.records.requested_end(session_id) is not None:
                    raise EngineError(Kind.SESSION_ENDED, f"session {session_id} has ended") from None
                raise _already_attached(session_id) from None
            except SandboxNotFound:
                raise EngineError(Kind.SESSION_ENDED, f"session {session_id} has ended") from None
            self.removals.started()
            hub = self.hubs.open(session_id)
            run = self._run(record, sandbox, hub)
            hub.on_gone = run.client_gone
            hub.attach(client)
            with self._lock:
                self._runs[session_id] = run
                self.metrics.sessions_active(len(self._runs))
        # Recorded before the program starts: a late RUNNING must not overwrite its FINISHED.
        state = State.COMPILING if sandbox.compiles else State.RUNNING
        self.records.write(replace(record, state=state, started_at=time.time()))
        code = self.records.read_code(session_id) or b""
        terminal = Terminal(record.cols, record.rows) if record.cols and record.rows else None
        try:
            run.start(code, terminal, record.merge_stderr)
        except ExecutorError as exc:
            self._forget(session_id)
            self.hubs.drop(session_id)
            self.records.end(session_id, Reason.INTERNAL_ERROR, lambda: _remove_quietly(sandbox.remove))
            self._claims.removed(session_id)
            raise EngineError(Kind.RUNTIME_UNAVAILABLE, f"the sandbox could not start: {exc}") from None
        self._claims.named(session_id)  # the program runs: the runtime may learn of the claim
        if self._shutting_down:
            run.end(Reason.SERVER_SHUTDOWN)
        return run

    def resume(
        self, session_id: str, client: Subscriber, after: int, takeover: bool = False
    ) -> SessionRun | None:
        """Attach a client again to a session of this worker's, from seq `after`; None if ended."""
        hub = self.hubs.get(session_id)
        if hub is None:
            raise EngineError(Kind.SESSION_ENDED, f"session {session_id} has ended")
        hub.attach(client, after, takeover, resumed=True)
        with self._lock:
            return self._runs.get(session_id)

    def _run(self, record: Record, sandbox: Sandbox, hub: SessionHub) -> SessionRun:
        run = SessionRun(
            sandbox,
            session_limits(self.config),
            _first_output_timed(hub.publish, record, self.metrics),
            hub.close,
            on_end=lambda outcome: _record_end(self.records, record, outcome),
            release=lambda: self._release(run),
            external_reason=lambda: self.records.requested_end(record.session_id),
            on_state=lambda state: self.records.write(replace(record, state=state, started_at=time.time())),
            abort_client=hub.abort,
        )
        return run

    @contextmanager
    def _claim(self, session_id: str) -> Iterator[None]:
        with self._lock:
            self._claiming[session_id] += 1
        try:
            yield
        finally:
            with self._lock:
                self._claiming[session_id] -= 1
                if self._claiming[session_id] <= 0:
                    del self._claiming[session_id]

    def _release(self, run: SessionRun) -> None:
        # Its program ended: its stopped container waits for a quiet moment (see removals).
        sandbox = run.sandbox  # not the run, which the removal need not keep
        self._claims.ended(sandbox.session_id)
        self.remove_later(sandbox)
        self._forget(sandbox.session_id)
        self.records.forget_code(sandbox.session_id)

    def remove_later(self, sandbox: Sandbox) -> None:
        """Remove a claimed sandbox whose program ended (a session's or a run's) once quiet (see
        removals); a warm one's store entry goes only then, or a reaper would take it for a
        pool's leftover meanwhile, and remove it a second time."""
        self.removals.add(sandbox.session_id, lambda: self._remove(sandbox))

    def _remove(self, sandbox: Sandbox) -> None:
        # If Docker is gone this fails; the reaper removes the container once Docker is back
        # (pool-named and in no one's store entry, or under its session's name).
        _remove_quietly(sandbox.remove)
        self._claims.removed(sandbox.session_id)

    def delete(self, session_id: str, key: Key | None = None) -> None:
        record = _owned(_session_record(self.records, session_id), key)
        if record.final:
            return
        with self._lock:
            run = self._runs.get(session_id)
        if run is not None:
            run.end(Reason.KILLED)
            run.wait(SHUTDOWN_GRACE)
            return
        with self._claim(session_id):
            try:
                # Claiming it ourselves keeps any client from attaching while we remove it.
                sandbox = _call(self._claims.claim, session_id, record.sandbox)
            except AlreadyClaimed:
                # Another worker runs it: leave word of the reason, then stop the container.
                self.records.request_end(session_id, Reason.KILLED)
                _call(self.executor.remove, session_id, record.sandbox)
                return
            except SandboxNotFound:
                self.records.end(session_id, Reason.KILLED)
                return
            self._end_claimed(sandbox, Reason.KILLED)

    def expire(self, session_id: str, reason: Reason, ref: SandboxRef | None = None) -> None:
        """End a session no client attached to, unless one attaches first; `ref`: its sandbox."""
        with self._claim(session_id):
            try:
                sandbox = _call(self._claims.claim, session_id, ref)
            except AlreadyClaimed:
                return  # a client attached in time, or another reaper got there first
            except SandboxNotFound:
                self.records.end(session_id, reason)
                return
            self._end_claimed(sandbox, reason)

    def _end_claimed(self, sandbox: Sandbox, reason: Reason) -> None:
        """End an unattached session whose sandbox this worker has claimed (see RecordStore.end)."""
        self.records.end(sandbox.session_id, reason, lambda: _call(sandbox.remove))
        self._claims.removed(sandbox.session_id)

    def is_live(self, session_id: str) -> bool:
        """Whether this worker runs the session, or is claiming its sandbox right now."""
        with self._lock:
            live = session_id in self._runs or session_id in self._claiming
        return live or self.removals.holds(session_id)

    def forget_ended(self) -> None:
        self.hubs.prune()

    def _forget(self, session_id: str) -> None:
        with self._lock:
            self._runs.pop(session_id, None)
            self.metrics.sessions_active(len(self._runs))

    # --- health and shutdown -------------------------------------------------------------
    def shutdown(self) -> None:
        """End every run of this worker with `server_shutdown` and remove its containers."""
        self._shutting_down = True
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.end(Reason.SERVER_SHUTDOWN)
        deadline = time.monotonic() + SHUTDOWN_GRACE
        for run in runs:
            if not run.join(max(0.0, deadline - time.monotonic())):
                log.warning("session %s did not end within the shutdown grace", run.sandbox.session_id)
        self.removals.flush()
        # The containers' names then say which are this worker's.
        self._claims.join()
        _remove_owned(self.executor, self.records, self.owner)


def _record_end(records: Store, record: Record, o: Outcome) -> None:
    usage = o.usage.public() if o.usage is not None else None
    records.finish(record.session_id, o.reason, o.exit_code, o.started_at, o.ended_at, usage, o.output_bytes)


def _remove_owned(executor: Executor, records: Store, owner: str) -> None:
    """End the sessions of every container `owner` claimed, and remove it (at shutdown)."""
    try:
        for info in executor.list():
            if info.owner == owner:
                records.end(
                    info.session_id, Reason.SERVER_SHUTDOWN, lambda i=info: executor.remove_sandbox(i)
                )
    except ExecutorError as exc:
        log.warning("shutdown could not remove every container: %s", exc)


def _remove_quietly(remove: Callable[[], None]) -> None:
    try:
        remove()
    except ExecutorError as exc:
        log.warning("removal deferred to the reaper: %s", exc)


def _first_output_timed(
    emit: Callable[[dict], None], record: Record, metrics: Metrics
) -> Callable[[dict], None]:
    """`emit`, timing the session's first output from its POST (the record's creation)."""
    warm = record.sandbox is not None and record.sandbox.running
    timed = False

    def emit_timed(message: dict) -> None:
        nonlocal timed
        if not timed and message.get("type") in ("stdout", "stderr"):
            timed = True
            metrics.first_output(warm, time.time() - record.created_at)
        emit(message)

    return emit_timed


def _session_record(records: Store, session_id: str) -> Record:
    record = records.read(session_id) if _is_uuid(session_id) else None
    # A batch run's session is the run's alone (GET /run/<id> tells of it).
    if record is None or record.batch:
        raise EngineError(Kind.NOT_FOUND, f"no session {shown(session_id)}")
    return record


def _owned(record: Record, key: Key | None) -> Record:
    """The session's record, if `key` made it (or neither a key did); to any other, no session."""
    if record.key != (key.name if key is not None else None):
        raise EngineError(Kind.NOT_FOUND, f"no session {shown(record.session_id)}")
    return record


def _refusal(admission: Admission, key: Key | None, config: Config) -> EngineError:
    """Why a session or run was not admitted: its key's limit, or the server's."""
    retry_after = max(1, int(config.idle_timeout // 6))
    if admission is Admission.OVER_QUOTA and key is not None:
        return EngineError(
            Kind.QUOTA_EXCEEDED,
            f"key {key.name!r} is at its limit of {key.max_sessions} live sessions and runs; "
            "end one, or try again shortly",
            retry_after=retry_after,
        )
    n = config.max_sessions
    busy = "the server's one session is" if n == 1 else f"all {n} of the server's sessions are"
    return EngineError(Kind.AT_CAPACITY, f"{busy} in use; try again shortly", retry_after=retry_after)


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def _already_attached(session_id: str) -> EngineError:
    return EngineError(Kind.ALREADY_ATTACHED, f"session {session_id} already has a client attached")


def _call(fn: Callable, *args: object) -> object:
    """Run an executor call, turning the runtime's failures into errors a client is told."""
    try:
        return fn(*args)
    except (AlreadyClaimed, SandboxNotFound):
        raise
    except ExecutorError as exc:
        raise runtime_error(exc) from exc
