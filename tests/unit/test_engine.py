"""The engine: admission, records, attach, delete and shutdown, over a fake executor."""

from __future__ import annotations

import gc
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest
from fakes import KILLED, FakeClient, FakeExecutor

from sandbox_engine.config import Config
from sandbox_engine.engine import Engine
from sandbox_engine.errors import EngineError, Kind
from sandbox_engine.executor import ExecutorError, RuntimeUnavailable
from sandbox_engine.languages import LANGUAGES
from sandbox_engine.reaper import RECLAIM_EVERY, Reaper, reap_instance
from sandbox_engine.records import Record, RecordStore
from sandbox_engine.states import Reason

CODE = "print(input('name? '))\n"
END = 5.0


@pytest.fixture
def make_engine(tmp_path, executor: FakeExecutor) -> Iterator[Callable[..., Engine]]:
    engines: list[Engine] = []

    def make(records: RecordStore | None = None, **overrides: object) -> Engine:
        config = Config(state_dir=str(tmp_path / "state"), **overrides)
        records = records or RecordStore(str(tmp_path / "records"))
        engine = Engine(config, executor, records)
        # Removed at once: these tests check what a removal does, test_removals when it comes.
        engine.removals.quiet = 0.0
        engines.append(engine)
        return engine

    yield make
    executor.error = None
    for engine in engines:
        engine.shutdown()


@pytest.fixture
def engine(make_engine) -> Engine:
    return make_engine()


def reaper(engine: Engine) -> Reaper:
    """A reaper of the engine's sessions, as the worker wires one, for passes the test makes."""
    config = engine.config
    return Reaper(
        engine.executor,
        engine.records,
        engine,
        config.idle_timeout,
        config.record_ttl,
        max_age=3600,
        members=engine.members,
    )


def refused(kind: Kind, call: Callable[..., object], *args: object) -> EngineError:
    with pytest.raises(EngineError) as caught:
        call(*args)
    assert caught.value.kind is kind, caught.value.message
    assert caught.value.message
    return caught.value


# --- admission ------------------------------------------------------------------------------


def test_a_created_session_has_a_created_record_and_an_unstarted_sandbox(engine, executor):
    session_id = engine.create_session("python", CODE)
    assert str(uuid.UUID(session_id, version=4)) == session_id
    described = engine.describe(session_id)
    assert described["sessionId"] == session_id
    assert (described["language"], described["state"]) == ("python", "CREATED")
    assert described["createdAt"].endswith("Z")
    assert (described["startedAt"], described["endedAt"], described["exitCode"], described["reason"]) == (
        None,
        None,
        None,
        None,
    )
    spec = executor.specs[session_id]
    python = LANGUAGES["python"]
    assert engine.records.read_code(session_id) == CODE.encode()
    assert (spec.image, spec.command, spec.source_file) == (
        python.image,
        python.run,
        python.source_file,
    )
    assert (spec.limits.memory, spec.limits.cpus, spec.limits.pids, spec.limits.disk) == (
        268435456,
        0.5,
        32,
        67108864,
    )
    assert not executor.sandboxes[session_id].started


def test_an_unknown_language_is_refused_and_the_known_ones_named(engine, executor):
    error = refused(Kind.UNKNOWN_LANGUAGE, engine.create_session, "cobol", CODE)
    assert "cobol" in error.message and "python" in error.message
    assert executor.sandboxes == {}


def test_code_over_the_size_limit_is_refused(make_engine, executor):
    engine = make_engine(max_code_size=16)
    engine.create_session("python", "x" * 16)
    refused(Kind.TOO_LARGE, engine.create_session, "python", "x" * 17)
    # The limit is in bytes: six euro signs are 18 bytes.
    refused(Kind.TOO_LARGE, engine.create_session, "python", "€" * 6)
    assert len(executor.sandboxes) == 1


def test_code_with_nul_is_refused(engine):
    refused(Kind.INVALID_REQUEST, engine.create_session, "python", "print(1)\x00")


def test_at_capacity_is_refused_with_a_retry_after(make_engine, executor):
    engine = make_engine(max_sessions=2)
    first = engine.create_session("python", CODE)
    engine.create_session("python", CODE)
    error = refused(Kind.AT_CAPACITY, engine.create_session, "python", CODE)
    assert error.retry_after == 5  # idle_timeout 30 / 6
    assert len(executor.sandboxes) == 2
    # Ending a session makes room.
    engine.delete(first)
    engine.create_session("python", CODE)


def test_workers_admitting_at_once_never_pass_the_limit(make_engine, executor, tmp_path):
    # Two workers share one state directory; each admits from several threads at the same moment.
    workers = [make_engine(RecordStore(str(tmp_path / "shared")), max_sessions=5) for _ in range(2)]
    barrier = threading.Barrier(16)
    outcomes: list[str] = []

    def create(engine: Engine) -> None:
        barrier.wait()
        try:
            engine.create_session("python", CODE)
            outcomes.append("created")
        except EngineError as exc:
            outcomes.append(exc.kind.name)

    threads = [threading.Thread(target=create, args=(workers[i % 2],)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["AT_CAPACITY"] * 11 + ["created"] * 5
    assert len(executor.sandboxes) == 5


def test_runtime_failures_on_create_are_told_apart(engine, executor):
    executor.error = RuntimeUnavailable("the Docker daemon is not running")
    error = refused(Kind.RUNTIME_UNAVAILABLE, engine.create_session, "python", CODE)
    assert "not running" in error.message
    executor.error = ExecutorError("disk full")
    refused(Kind.INTERNAL, engine.create_session, "python", CODE)


@pytest.mark.parametrize(
    "session_id", ["3b241101-e2bb-4255-8caf-4136c566a962", "nope", "../../etc/passwd", ""]
)
def test_describe_of_an_unknown_session_is_not_found(engine, session_id):
    refused(Kind.NOT_FOUND, engine.describe, session_id)


def test_readiness_reports_the_executor_problem(engine, executor):
    assert engine.catalog.readiness() is None
    executor.problem = "image sandbox-engine/python:latest is missing"
    assert engine.catalog.readiness() == "image sandbox-engine/python:latest is missing"


# --- attach ---------------------------------------------------------------------------------


def test_attach_runs_the_program_and_records_how_it_ended(engine, executor):
    session_id = engine.create_session("python", CODE)
    engine.check_attachable(session_id)
    client = FakeClient()
    run = engine.attach(session_id, client)
    sandbox = executor.sandboxes[session_id]
    assert sandbox.started
    assert engine.describe(session_id)["state"] == "RUNNING"
    assert engine.is_live(session_id)

    sandbox.stdout("name? ")
    sandbox.exit(0)
    assert run.wait(END)
    assert client.messages == [
        {"type": "state", "state": "RUNNING"},
        {"type": "stdout", "data": "name? "},
        {
            "type": "state",
            "state": "FINISHED",
            "exitCode": 0,
            "reason": "exited",
            "signal": None,
            "usage": None,
        },
    ]
    described = engine.describe(session_id)
    assert (described["state"], described["exitCode"], described["reason"]) == ("FINISHED", 0, "exited")
    assert described["startedAt"] is not None and described["endedAt"] is not None
    assert sandbox.removed.is_set()
    assert not engine.is_live(session_id)
    refused(Kind.SESSION_ENDED, engine.check_attachable, session_id)


def test_a_second_attach_is_refused(engine):
    session_id = engine.create_session("python", CODE)
    first = FakeClient()
    engine.attach(session_id, first)
    refused(Kind.ALREADY_ATTACHED, engine.check_attachable, session_id)
    second = FakeClient()
    refused(Kind.ALREADY_ATTACHED, engine.attach, session_id, second)
    assert second.messages == []


def test_a_refused_second_attach_leaves_the_first_run_alone(engine, executor):
    session_id = engine.create_session("python", CODE)
    sandbox = executor.sandboxes[session_id]
    first = FakeClient()
    run = engine.attach(session_id, first)
    second = FakeClient()
    refused(Kind.ALREADY_ATTACHED, engine.attach, session_id, second)

    reaper(engine).reap_once()
    assert not sandbox.removed.is_set(), "the reaper removed a running session"
    assert not run.finished
    assert first.messages == [{"type": "state", "state": "RUNNING"}]


class SlowRunningRecord(RecordStore):
    """The attaching thread falls behind: its RUNNING record lands after the run has ended."""

    def __init__(self, directory: str) -> None:
        super().__init__(directory)
        self.final_written = threading.Event()

    def write(self, record: Record) -> None:
        if record.state == "RUNNING":
            self.final_written.wait(END)
        super().write(record)
        if record.final:
            self.final_written.set()


def test_a_program_that_ends_at_once_is_not_left_running(make_engine, executor, tmp_path):
    engine = make_engine(records=SlowRunningRecord(str(tmp_path / "records")))
    session_id = engine.create_session("python", "print('hi')")
    sandbox = executor.sandboxes[session_id]
    sandbox.stdout("hi\n")
    sandbox.exit(0)
    client = FakeClient()
    run = engine.attach(session_id, client)
    assert run.wait(END)
    assert client.final["state"] == "FINISHED"
    assert engine.describe(session_id)["state"] == "FINISHED"


def test_attach_to_an_unknown_session_is_not_found(engine):
    client = FakeClient()
    refused(Kind.NOT_FOUND, engine.attach, str(uuid.uuid4()), client)


def test_a_sandbox_that_cannot_start_ends_the_session(engine, executor):
    session_id = engine.create_session("python", CODE)
    sandbox = executor.sandboxes[session_id]
    sandbox.start_error = ExecutorError("image vanished")
    client = FakeClient()
    error = refused(Kind.RUNTIME_UNAVAILABLE, engine.attach, session_id, client)
    assert "image vanished" in error.message
    described = engine.describe(session_id)
    assert (described["state"], described["reason"]) == ("TERMINATED", "internal_error")
    assert sandbox.removed.is_set()
    assert not engine.is_live(session_id)


def test_ended_sessions_leave_nothing_in_the_engine(make_engine, executor):
    # The soak's memory question (BENCHMARKS.md): a worker must not keep anything of a session
    # once it has ended, whichever way it ended: no run, no claim, no thread, no run object.
    # Without a reconnect grace, a client that goes away ends its session at once.
    engine = make_engine(reconnect_grace=0)
    runs = []
    for n in range(40):
        session_id = engine.create_session("python", CODE)
        client = FakeClient(fail_on=(lambda m: m.get("type") == "stdout") if n % 4 == 2 else None)
        run = engine.attach(session_id, client)
        sandbox = executor.sandboxes[session_id]
        if n % 4 == 0:
            sandbox.stdout("name? ")
            sandbox.exit(0)
        elif n % 4 == 1:
            engine.delete(session_id)
        elif n % 4 == 2:
            sandbox.stdout("lost")  # the client is gone
        else:
            run.end(Reason.KILLED)
        assert run.join(END)
        runs.append(weakref.ref(run))
        del run, client, sandbox
    assert engine._runs == {} and not engine._claiming
    gc.collect()
    assert [r for r in runs if r() is not None] == []


# --- delete ---------------------------------------------------------------------------------


def test_delete_of_an_unattached_session_kills_it_and_removes_the_sandbox(engine, executor):
    session_id = engine.create_session("python", CODE)
    sandbox = executor.sandboxes[session_id]
    engine.delete(session_id)
    described = engine.describe(session_id)
    assert (described["state"], described["exitCode"], described["reason"]) == ("TERMINATED", None, "killed")
    assert described["endedAt"] is not None
    assert sandbox.removed.is_set()
    assert executor.list() == []
    refused(Kind.SESSION_ENDED, engine.check_attachable, session_id)
    client = FakeClient()
    refused(Kind.SESSION_ENDED, engine.attach, session_id, client)


def test_a_delete_whose_removal_fails_is_refused_and_finished_by_the_reaper(engine, executor):
    session_id = engine.create_session("python", CODE)
    sandbox = executor.sandboxes[session_id]
    sandbox.remove_error = RuntimeUnavailable("Docker does not answer")
    refused(Kind.RUNTIME_UNAVAILABLE, engine.delete, session_id)
    assert engine.describe(session_id)["state"] == "CREATED", "not killed, so not recorded as killed"
    refused(Kind.SESSION_ENDED, engine.check_attachable, session_id)

    sandbox.remove_error = None
    reaper(engine).reap_once()
    described = engine.describe(session_id)
    assert (described["state"], described["reason"]) == ("TERMINATED", "killed")
    assert executor.list() == []


def test_delete_of_a_running_session_tells_its_client(engine, executor):
    session_id = engine.create_session("python", CODE)
    client = FakeClient()
    run = engine.attach(session_id, client)
    engine.delete(session_id)
    assert run.finished
    assert client.final == {
        "type": "state",
        "state": "TERMINATED",
        "exitCode": KILLED.exit_code,
        "reason": "killed",
        "signal": "SIGKILL",
        "usage": None,
    }
    assert client.closed.is_set()
    assert engine.describe(session_id)["reason"] == "killed"
    assert executor.removed == [session_id]


def test_delete_of_an_ended_session_changes_nothing(engine):
    session_id = engine.create_session("python", CODE)
    engine.delete(session_id)
    before = engine.describe(session_id)
    engine.delete(session_id)
    assert engine.describe(session_id) == before


def test_delete_of_an_unknown_session_is_not_found(engine):
    refused(Kind.NOT_FOUND, engine.delete, str(uuid.uuid4()))


# --- expiry of unattached sessions ----------------------------------------------------------


def backdate(engine: Engine, session_id: str, seconds: float) -> None:
    record = engine.records.read(session_id)
    engine.records.write(replace(record, created_at=record.created_at - seconds))


def test_an_expired_session_reads_terminated_only_once_its_sandbox_is_gone(make_engine, executor):
    engine = make_engine(idle_timeout=5)
    session_id = engine.create_session("python", CODE)
    backdate(engine, session_id, 6)
    sandbox = executor.sandboxes[session_id]
    seen_while_removing: list[dict] = []
    refusals: list[Kind] = []
    remove = sandbox.remove

    def remove_and_look() -> None:
        seen_while_removing.append(engine.describe(session_id))
        client = FakeClient()
        try:
            engine.attach(session_id, client)
        except EngineError as exc:
            refusals.append(exc.kind)
        remove()

    sandbox.remove = remove_and_look
    reaper(engine).reap_once()
    assert seen_while_removing[0]["state"] == "CREATED"
    assert refusals == [Kind.SESSION_ENDED], "an attach during the expiry must hear the session ended"
    described = engine.describe(session_id)
    assert (described["state"], described["reason"]) == ("TERMINATED", "idle_timeout")
    assert executor.list() == []


def test_an_expiry_whose_removal_fails_keeps_its_reason_for_the_next_pass(make_engine, executor):
    engine = make_engine(idle_timeout=5)
    session_id = engine.create_session("python", CODE)
    backdate(engine, session_id, 6)
    sandbox = executor.sandboxes[session_id]
    sandbox.remove_error = RuntimeUnavailable("Docker does not answer")
    refused(Kind.RUNTIME_UNAVAILABLE, reaper(engine).reap_once)
    assert engine.describe(session_id)["state"] == "CREATED"
    refused(Kind.SESSION_ENDED, engine.check_attachable, session_id)

    sandbox.remove_error = None
    reaper(engine).reap_once()
    described = engine.describe(session_id)
    assert (described["state"], described["reason"]) == ("TERMINATED", "idle_timeout")
    assert executor.list() == []


def test_a_session_attached_in_time_is_not_expired(make_engine, executor):
    engine = make_engine(idle_timeout=5)
    session_id = engine.create_session("python", CODE)
    client = FakeClient()
    run = engine.attach(session_id, client)
    backdate(engine, session_id, 6)
    reaper(engine).reap_once()
    assert not run.finished
    assert engine.describe(session_id)["state"] == "RUNNING"


# --- shutdown -------------------------------------------------------------------------------


def test_shutdown_ends_every_run_with_server_shutdown(engine, executor):
    clients = {}
    for _ in range(2):
        session_id = engine.create_session("python", CODE)
        clients[session_id] = FakeClient()
        engine.attach(session_id, clients[session_id])

    engine.shutdown()
    for session_id, client in clients.items():
        assert client.final["state"] == "TERMINATED"
        assert client.final["reason"] == "server_shutdown"
        assert client.closed.is_set()
        described = engine.describe(session_id)
        assert (described["state"], described["reason"]) == ("TERMINATED", "server_shutdown")
    assert sorted(executor.removed) == sorted(clients)
    refused(Kind.RUNTIME_UNAVAILABLE, engine.create_session, "python", CODE)


# --- the warm pool and sandbox references ---------------------------------------------------


def warm(engine: Engine, executor: FakeExecutor, count: int, tty: bool = False) -> list[str]:
    """Pool sandboxes as the refiller makes and offers them; their names."""
    for _ in range(count):
        engine.members.add(executor.create(engine.sandbox_spec("python", tty)))
    return [info.name for info in executor.list() if info.waiting and info.tty == tty]


def test_a_session_takes_a_warm_sandbox_and_attaches_by_its_reference(make_engine, executor):
    engine = make_engine(pool_size="python=2")
    names = warm(engine, executor, 2)
    session_id = engine.create_session("python", CODE)

    record = engine.records.read(session_id)
    taken = record.sandbox
    assert taken is not None and taken.running and taken.name in names
    assert [ref.name for ref in engine.members.waiting()] == [n for n in names if n != taken.name]
    assert [(t.ref, t.session_id) for t in engine.members.taken()] == [(taken, session_id)]
    client = FakeClient()
    engine.attach(session_id, client)  # claimed in the store; the runtime's name follows
    engine._claims.join()
    assert executor.named == [(session_id, engine.owner)]
    assert executor.refs[session_id] == taken
    assert engine.members.taken() == [], "claimed under the session's name: settled"
    sandbox = executor.sandboxes[session_id]
    assert sandbox.code == CODE.encode()
    sandbox.exit(0)
    assert engine._runs == {} or engine._runs[session_id].wait(END)


def wait_until(predicate: Callable[[], object], timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_short_session_ends_before_the_runtime_learns_of_its_claim(make_engine, executor):
    # Docker's rename costs a core for tens of milliseconds: a session over within the naming
    # delay never pays it; its store entry is settled as its sandbox goes.
    engine = make_engine(pool_size="python=1")
    warm(engine, executor, 1)
    session_id = engine.create_session("python", CODE)
    engine.attach(session_id, FakeClient())
    executor.sandboxes[engine.records.read(session_id).sandbox.name].exit(0)
    assert engine._runs == {} or engine._runs[session_id].wait(END)
    assert wait_until(lambda: engine.records.read(session_id).final)
    assert wait_until(lambda: engine.members.taken() == [] and not engine.removals.holds(session_id))
    engine._claims.join()
    assert executor.named == []


def test_a_session_still_running_after_the_naming_delay_is_named(make_engine, executor):
    engine = make_engine(pool_size="python=1")
    engine._claims.delay = 0.05
    warm(engine, executor, 1)
    session_id = engine.create_session("python", CODE)
    engine.attach(session_id, FakeClient())
    assert wait_until(lambda: executor.named == [(session_id, engine.owner)])
    assert wait_until(lambda: engine.members.taken() == [])
    executor.sandboxes[session_id].exit(0)
    assert engine._runs == {} or engine._runs[session_id].wait(END)


def test_without_a_warm_sandbox_of_its_kind_a_session_gets_a_new_one(make_engine, executor):
    engine = make_engine(pool_size="python=1")
    warm(engine, executor, 1, tty=True)  # a terminal session's, not a pipe session's
    session_id = engine.create_session("python", CODE)
    assert not executor.refs[session_id].running
    assert len(engine.members.waiting()) == 1


def test_two_sessions_never_take_the_same_warm_sandbox(make_engine, executor):
    engine = make_engine(pool_size="python=8")
    warm(engine, executor, 8)
    sessions: list[str] = []
    threads = [
        threading.Thread(target=lambda: sessions.append(engine.create_session("python", CODE)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    refs = [engine.records.read(session_id).sandbox.id for session_id in sessions]
    assert len(set(refs)) == 8
    # Every session got one of the warm ones or a new one; none of the pool is left half taken.
    assert all(info.session_id in sessions for info in executor.list() if not info.pooled)
    assert sorted(t.ref.id for t in engine.members.taken()) == sorted(r for r in refs if "pool" in r)


def test_the_reaper_never_takes_a_session_claimed_after_its_last_look_for_an_orphan(engine, executor):
    # The interleaving that killed live sessions under load: the reaper learned which sessions
    # its worker runs, then a client attached, then the reaper listed the containers and found
    # the new claim among them. Here the attach happens inside the listing, deterministically.
    session_id = engine.create_session("python", CODE)
    client = FakeClient()
    runs = []

    def attach_first() -> None:
        executor.before_list = None
        runs.append(engine.attach(session_id, client))

    executor.before_list = attach_first
    reaper(engine).reap_once()
    sandbox = executor.sandboxes[session_id]
    assert not sandbox.removed.is_set(), "the reaper removed a live session as an orphan"
    assert engine.describe(session_id)["state"] == "RUNNING"
    sandbox.exit(0)
    assert runs[0].wait(END)
    assert client.final["reason"] == "exited"


def test_a_claim_whose_owner_is_gone_is_reaped_as_an_internal_error(engine, executor):
    session_id = engine.create_session("python", CODE)
    executor.claim(session_id, "p999999999")  # a worker that no longer exists
    reaper(engine).reap_once()
    described = engine.describe(session_id)
    assert (described["state"], described["reason"]) == ("TERMINATED", "internal_error")
    assert executor.list() == []


def test_an_ended_sessions_sandbox_is_removed_and_its_end_kept(engine, executor):
    # Its removal failed, or ran between the reaper's listing and its look at who holds it (a
    # burst of batch runs showed it): the end recorded stands, and no other is asked for.
    session_id = engine.create_session("python", CODE)
    executor.claim(session_id, "p999999999")
    engine.records.finish(session_id, Reason.EXITED, exit_code=0)
    reaper(engine).reap_once()
    described = engine.describe(session_id)
    assert (described["state"], described["reason"], described["exitCode"]) == ("FINISHED", "exited", 0)
    assert engine.records.requested_end(session_id) is None
    assert executor.list() == []


def test_the_reaper_frees_what_removed_sandboxes_held_once_a_minute(engine, executor):
    reaper_ = reaper(engine)
    reaper_.reap_once()
    reaper_.reap_once()
    assert len(executor.reclaims) == 1
    reaper_._last_reclaim -= RECLAIM_EVERY
    reaper_.reap_once()
    assert len(executor.reclaims) == 2


def test_reaping_an_instance_removes_its_sandboxes_then_frees_what_they_held(engine, executor):
    waiting = engine.create_session("python", CODE)
    assert reap_instance(executor, engine.records) == 1
    assert executor.reclaims == [[]]
    assert engine.describe(waiting)["reason"] == "internal_error"


def test_a_dead_warm_sandbox_is_reaped_and_a_live_one_kept(make_engine, executor):
    engine = make_engine(pool_size="python=2")
    dead, alive = warm(engine, executor, 2)
    executor.sandboxes[dead].exit(1)
    reaper(engine).reap_once()
    assert [info.name for info in executor.list()] == [alive]


# --- one end per session --------------------------------------------------------------------


def test_a_run_ending_after_another_ending_does_not_overwrite_it(engine, executor):
    # Crash reaping or a reaper recorded the end first; the run's own outcome comes later.
    session_id = engine.create_session("python", CODE)
    client = FakeClient()
    run = engine.attach(session_id, client)
    engine.records.finish(session_id, Reason.SERVER_SHUTDOWN)
    executor.sandboxes[session_id].exit(0)
    assert run.wait(END)
    described = engine.describe(session_id)
    assert (described["state"], described["reason"]) == ("TERMINATED", "server_shutdown")


def test_shutdown_records_a_leftover_end_only_once_its_sandbox_is_gone(engine, executor):
    # A sandbox this worker claimed but no longer runs (its removal failed earlier).
    session_id = engine.create_session("python", CODE)
    executor.claim(session_id, engine.owner)
    sandbox = executor.sandboxes[session_id]
    seen: list[str] = []
    remove = sandbox.remove

    def remove_and_look() -> None:
        seen.append(engine.describe(session_id)["state"])
        remove()

    sandbox.remove = remove_and_look
    engine.shutdown()
    assert seen == ["CREATED"]
    described = engine.describe(session_id)
    assert (described["state"], described["reason"]) == ("TERMINATED", "server_shutdown")


def test_the_first_of_two_racing_endings_is_the_one_recorded(engine):
    session_id = engine.create_session("python", CODE)
    reasons = [Reason.KILLED, Reason.IDLE_TIMEOUT] * 8
    firsts: list[bool] = []
    threads = [
        threading.Thread(target=lambda r=r: firsts.append(engine.records.finish(session_id, r)))
        for r in reasons
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert firsts.count(True) == 1


def test_a_claimed_session_past_the_age_no_run_reaches_is_removed_whoever_holds_it(engine, executor):
    session_id = engine.create_session("python", CODE)
    executor.claim(session_id, engine.owner)  # a run of this worker that could not be ended
    engine._runs[session_id] = None  # live, as far as this worker knows
    backdate(engine, session_id, 3601)
    reaper(engine).reap_once()
    described = engine.describe(session_id)
    assert (described["state"], described["reason"]) == ("TERMINATED", "timeout")
    assert executor.list() == []
    del engine._runs[session_id]


def test_every_reaper_pass_prunes_ended_records_even_while_the_runtime_is_away(engine, executor):
    ended = [engine.create_session("python", CODE) for _ in range(3)]
    live = engine.create_session("python", CODE)
    for session_id in ended:
        engine.delete(session_id)
    executor.error = RuntimeUnavailable("Docker is not answering")
    config = engine.config
    passes = Reaper(executor, engine.records, engine, config.idle_timeout, config.record_ttl, max_records=1)
    passes.run_once()
    assert [engine.records.read(session_id) is not None for session_id in ended] == [False, False, True]
    assert engine.describe(live)["state"] == "CREATED"


# --- resume ---------------------------------------------------------------------------------


def test_a_client_that_goes_away_can_resume_and_sees_every_message_once(engine, executor):
    session_id = engine.create_session("python", CODE)
    first = FakeClient(fail_on=lambda m: m.get("data") == "b")
    run = engine.attach(session_id, first)
    sandbox = executor.sandboxes[session_id]
    sandbox.stdout("a")
    sandbox.stdout("b")
    sandbox.stdout("c")
    deadline = time.monotonic() + END
    while engine.hubs.get(session_id).buffer.last < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not run.finished
    second = FakeClient()
    assert engine.resume(session_id, second, after=first.seqs[-1]) is run
    sandbox.exit(0)
    assert run.wait(END)
    assert first.text() + second.text() == "abc"
    # The replay ends with `live`, which has no seq.
    assert second.messages.count({"type": "live"}) == 1
    assert first.seqs + [s for s in second.seqs if s is not None] == list(range(1, 6))
    assert second.final["state"] == "FINISHED"


def test_a_resume_after_the_end_replays_the_final_state(engine, executor):
    session_id = engine.create_session("python", CODE)
    run = engine.attach(session_id, FakeClient())
    executor.sandboxes[session_id].exit(0)
    assert run.wait(END)
    engine.check_attachable(session_id, resume=1)
    late = FakeClient()
    assert engine.resume(session_id, late, after=1) is None
    assert late.messages[-2]["state"] == "FINISHED" and late.final == {"type": "live"}
    assert late.closed.is_set()


def test_the_reapers_pass_lets_go_of_an_ended_sessions_buffer_after_its_grace(make_engine, executor):
    engine = make_engine(reconnect_grace=0.05)
    forgotten: list[str] = []
    engine.hubs.on_forget = forgotten.append
    session_id = engine.create_session("python", CODE)
    run = engine.attach(session_id, FakeClient())
    executor.sandboxes[session_id].exit(0)
    assert run.wait(END)
    time.sleep(0.1)
    # No attach or lookup comes: the pass alone forgets it.
    reaper(engine).prune_once()
    assert forgotten == [session_id]
