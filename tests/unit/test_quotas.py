"""Sessions and runs owned by API keys: each key's limit of live sessions plus runs, exact across
workers under a burst, beside the server's; and no key sees or ends another's."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from fakes import FakeExecutor

from sandbox_engine.batch import RunRequest, SourceFile
from sandbox_engine.config import Config
from sandbox_engine.engine import Engine
from sandbox_engine.errors import EngineError, Kind
from sandbox_engine.keys import DEFAULT_SCOPES, Key
from sandbox_engine.records import RecordStore
from sandbox_engine.runs import Runs

CODE = "print(input('name? '))\n"
ALICE = Key("alice", DEFAULT_SCOPES, max_sessions=2)
BOB = Key("bob", DEFAULT_SCOPES, max_sessions=3)
CAROL = Key("carol", DEFAULT_SCOPES)


@pytest.fixture
def make_engine(tmp_path, executor: FakeExecutor) -> Iterator[Callable[..., Engine]]:
    engines: list[Engine] = []

    def make(**overrides: object) -> Engine:
        config = Config(state_dir=str(tmp_path / "state"), **overrides)
        engine = Engine(config, executor, RecordStore(str(tmp_path / "records")))
        engines.append(engine)
        return engine

    yield make
    executor.error = None
    for engine in engines:
        engine.shutdown()


def refused(kind: Kind, call: Callable[..., object], *args: object, **kwargs: object) -> EngineError:
    with pytest.raises(EngineError) as caught:
        call(*args, **kwargs)
    assert caught.value.kind is kind, caught.value.message
    return caught.value


def test_a_key_has_at_most_its_limit_of_sessions_and_runs_live(make_engine, executor):
    engine = make_engine(max_sessions=10)
    first = engine.create_session("python", CODE, key=ALICE)
    # A batch run counts as much as a session.
    engine.create_session("python", CODE, batch=True, key=ALICE)
    error = refused(Kind.QUOTA_EXCEEDED, engine.create_session, "python", CODE, key=ALICE)
    assert "'alice'" in error.message and "2" in error.message
    assert error.retry_after == 5 and error.headers == {"Retry-After": "5"}
    assert error.kind.code == "quota_exceeded" and error.kind.http_status == 429
    # Others are not held back by alice's limit, nor is a session without a key.
    engine.create_session("python", CODE, key=BOB)
    engine.create_session("python", CODE)
    engine.delete(first, ALICE)
    engine.create_session("python", CODE, key=ALICE)
    assert len(executor.sandboxes) == 4  # the deleted one is gone


def test_the_servers_limit_stays_for_every_key(make_engine):
    engine = make_engine(max_sessions=2)
    engine.create_session("python", CODE, key=CAROL)
    engine.create_session("python", CODE, key=BOB)
    error = refused(Kind.AT_CAPACITY, engine.create_session, "python", CODE, key=BOB)
    assert error.kind.code == "at_capacity"


def test_per_key_limits_hold_exactly_across_workers_under_a_burst(make_engine, executor):
    """Two engines on one state directory, as two workers; 30 creations at the same moment."""
    workers = [make_engine(max_sessions=40) for _ in range(2)]
    barrier = threading.Barrier(30)
    outcomes: list[tuple[str, str]] = []
    keys = (ALICE, BOB, CAROL)

    def create(i: int) -> None:
        key = keys[i % 3]
        barrier.wait()
        try:
            workers[i % 2].create_session("python", CODE, batch=i % 4 == 0, key=key)
            outcomes.append((key.name, "created"))
        except EngineError as exc:
            outcomes.append((key.name, exc.kind.code))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    count = {(name, what): sum(1 for o in outcomes if o == (name, what)) for name, what in outcomes}
    assert count == {
        ("alice", "created"): 2,
        ("alice", "quota_exceeded"): 8,
        ("bob", "created"): 3,
        ("bob", "quota_exceeded"): 7,
        ("carol", "created"): 10,
    }
    assert len(executor.sandboxes) == 15


def test_a_session_is_seen_and_ended_by_its_key_alone(make_engine):
    engine = make_engine()
    session_id = engine.create_session("python", CODE, key=ALICE)
    assert engine.describe(session_id, ALICE)["sessionId"] == session_id
    for other in (BOB, None):
        refused(Kind.NOT_FOUND, engine.describe, session_id, other)
        refused(Kind.NOT_FOUND, engine.delete, session_id, other)
    assert engine.describe(session_id, ALICE)["state"] == "CREATED"
    # A key of the same name is the same owner (a key is made again only after a revoke).
    same = Key("alice", frozenset(), max_sessions=9)
    engine.delete(session_id, same)
    assert engine.describe(session_id, ALICE)["reason"] == "killed"
    # A session made without a key is no key's.
    anonymous = engine.create_session("python", CODE)
    refused(Kind.NOT_FOUND, engine.describe, anonymous, ALICE)
    assert engine.describe(anonymous)["sessionId"] == anonymous
    # The WebSocket's check does not ask for a key: the id is the capability.
    engine.check_attachable(anonymous)


def test_a_run_is_read_by_its_key_alone(make_engine, executor):
    engine = make_engine()
    runs = Runs(engine)
    request = RunRequest("python", (SourceFile("", b"print(1)"),))
    run_id = runs._admit(runs.plan(request), ALICE)
    assert engine.records.read(run_id).key == "alice"
    assert runs.get(run_id, ALICE).run_id == run_id
    for other in (BOB, None):
        refused(Kind.NOT_FOUND, runs.get, run_id, other)
        refused(Kind.NOT_FOUND, runs.wait, run_id, 0.01, other)
    executor.remove(run_id)
