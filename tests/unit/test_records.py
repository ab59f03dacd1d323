"""The record store: what every worker reads of a session, admission, and the end of a session."""

from __future__ import annotations

import os
import stat
import time
from dataclasses import replace

import pytest

from sandbox_engine.executor import ExecutorError, SandboxRef
from sandbox_engine.locks import exclusive
from sandbox_engine.records import Admission, Record, RecordStore
from sandbox_engine.states import Reason, State


@pytest.fixture
def store(tmp_path) -> RecordStore:
    return RecordStore(str(tmp_path / "records"))


def record(session_id: str = "s1", **fields) -> Record:
    fields = {"language": "python", "state": State.CREATED, "created_at": time.time(), **fields}
    return Record(session_id=session_id, **fields)


def test_a_record_reads_back_as_written_with_its_types(store):
    ref = SandboxRef(id="c0ffee", language="c", tty=True, compile=("gcc", "main.c"), running=True, uid=200001)
    store.write(record(sandbox=ref, cols=80, rows=24))
    back = store.read("s1")
    assert back == record(sandbox=ref, cols=80, rows=24, created_at=back.created_at)
    assert back.state is State.CREATED and back.sandbox == ref


def test_a_missing_or_torn_record_reads_as_none(store):
    assert store.read("nobody") is None
    with open(os.path.join(store.directory, "torn.json"), "w") as f:
        f.write('{"session_id": "torn", "lang')
    assert store.read("torn") is None


def test_admission_counts_live_sessions_and_an_end_makes_room(store):
    assert store.admit(record("a"), 2) is Admission.ADMITTED
    assert store.admit(record("b"), 2) is Admission.ADMITTED
    assert store.admit(record("c"), 2) is Admission.AT_CAPACITY
    assert store.read("c") is None
    store.finish("a", Reason.KILLED)
    assert store.live_count() == 1
    assert store.admit(record("c"), 2) is Admission.ADMITTED


def test_finish_keeps_the_first_ending(store):
    store.write(record(started_at=1.0))
    assert store.finish("s1", Reason.EXITED, exit_code=0)
    assert not store.finish("s1", Reason.KILLED)
    ended = store.read("s1")
    assert (ended.state, ended.reason, ended.exit_code) == (State.FINISHED, Reason.EXITED, 0)
    assert ended.started_at == 1.0 and ended.ended_at is not None
    assert not store.finish("nobody", Reason.KILLED)


def test_end_leaves_word_removes_then_records(store):
    store.write(record())
    store.write_code("s1", b"print(1)")
    seen = []

    def remove() -> None:
        seen.append((store.requested_end("s1"), store.read("s1").state))

    store.end("s1", Reason.IDLE_TIMEOUT, remove)
    assert seen == [(Reason.IDLE_TIMEOUT, State.CREATED)]
    ended = store.read("s1")
    assert (ended.state, ended.reason) == (State.TERMINATED, Reason.IDLE_TIMEOUT)
    assert store.read_code("s1") is None


def test_an_end_whose_removal_fails_records_nothing_but_keeps_its_reason(store):
    store.write(record())

    def remove() -> None:
        raise ExecutorError("Docker could not remove the sandbox")

    with pytest.raises(ExecutorError):
        store.end("s1", Reason.KILLED, remove)
    assert store.read("s1").state is State.CREATED
    assert store.requested_end("s1") is Reason.KILLED


class Clock:
    """The time as the store sees it, moved on by the test."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timed(tmp_path, clock: Clock) -> RecordStore:
    return RecordStore(str(tmp_path / "timed"), clock=clock)


def ended(store: RecordStore, session_id: str, reason: Reason = Reason.EXITED) -> None:
    store.admit(record(session_id), 1000)
    store.request_end(session_id, reason)
    store.finish(session_id, reason)


def files_of(store: RecordStore, session_id: str) -> list[str]:
    return sorted(name for name in os.listdir(store.directory) if name.startswith(session_id + "."))


def test_prune_forgets_ended_sessions_past_their_age_with_all_their_files(timed, clock):
    ended(timed, "old")
    clock.now += 30
    ended(timed, "young")
    timed.write(record("live"))
    timed.write_code("live", b"print(1)")
    assert files_of(timed, "old") == ["old.end", "old.json"]
    clock.now += 40  # old ended 70 s ago, young 40 s ago
    assert timed.prune(older_than=60, most=100) == 1
    assert files_of(timed, "old") == [] and timed.read("old") is None
    assert timed.read("young").final
    assert timed.read("live") is not None and timed.read_code("live") == b"print(1)"
    assert timed.prune(older_than=60, most=100) == 0


def test_prune_keeps_the_most_recent_records_and_forgets_the_oldest_first(timed, clock):
    for n in range(5):
        ended(timed, f"s{n}")
        clock.now += 1
    # Live sessions do not count, and are never forgotten, however many.
    for n in range(3):
        timed.write(record(f"live{n}"))
    assert timed.prune(older_than=3600, most=2) == 3
    assert [timed.read(f"s{n}") is not None for n in range(5)] == [False, False, False, True, True]
    assert all(timed.read(f"live{n}") is not None for n in range(3))
    assert timed.live_count() == 3
    assert timed.prune(older_than=3600, most=2) == 0


def test_prune_never_forgets_a_live_session_even_one_marked_ended(timed, clock):
    ended(timed, "s1")
    # A writer that raced the ending made the session live again.
    timed.write(record("s1", state=State.RUNNING))
    clock.now += 7200
    timed.prune(older_than=60, most=0)
    assert timed.read("s1").state is State.RUNNING
    assert os.listdir(timed.ended_directory) == []
    # Once it ends for good it is marked anew, and goes in its turn.
    timed.finish("s1", Reason.KILLED)
    clock.now += 7200
    assert timed.prune(older_than=60, most=100) == 1
    assert timed.read("s1") is None


def test_prune_looks_again_whenever_the_index_changed(timed, clock):
    ended(timed, "s1")
    assert timed.prune(older_than=60, most=1) == 0
    ended(timed, "s2")  # at once: perhaps in the same clock tick as the index's last change
    assert timed.prune(older_than=60, most=1) == 1
    # An index unchanged for a while is not listed again until it changes or its oldest ages.
    past = time.time() - 10
    os.utime(timed.ended_directory, (past, past))
    assert timed.prune(older_than=60, most=1) == 0
    ended(timed, "s3")
    assert timed.prune(older_than=60, most=1) == 1
    os.utime(timed.ended_directory, (past, past))
    assert timed.prune(older_than=60, most=1) == 0
    clock.now += 61
    assert timed.prune(older_than=60, most=1) == 1
    assert os.listdir(timed.ended_directory) == []


def test_sweep_forgets_old_files_no_live_session_owns_but_never_a_lock(store):
    store.write(record("old"))
    store.write(record("old").ended(Reason.EXITED))
    os.unlink(os.path.join(store.ended_directory, os.listdir(store.ended_directory)[0]))  # a writer died
    store.write(record("live"))
    store.write_code("live", b"x")
    with store_lock(store, ".admit.lock"), store_lock(store, ".rename-3.lock"):
        pass
    stray = os.path.join(store.directory, ".tmp-abc123")
    open(stray, "w").close()
    # A live mark whose record is gone: its writer died in between.
    open(os.path.join(store.live_directory, "ghost"), "w").close()
    past = time.time() - 100
    for name in os.listdir(store.directory):
        os.utime(os.path.join(store.directory, name), (past, past))
    store.sweep(older_than=50)
    assert store.read("old") is None
    assert store.read("live") is not None and store.read_code("live") == b"x"
    assert not os.path.exists(stray)
    assert {".admit.lock", ".rename-3.lock"} <= set(os.listdir(store.directory))
    assert sorted(os.listdir(store.live_directory)) == ["live"]


def store_lock(store: RecordStore, name: str):
    return exclusive(os.path.join(store.directory, name))


def test_forget_leaves_nothing_of_a_session_that_never_came_to_be(store):
    store.admit(record(), 5)
    store.write_code("s1", b"x")
    store.request_end("s1", Reason.KILLED)
    store.forget("s1")
    assert store.read("s1") is None and store.read_code("s1") is None
    assert store.requested_end("s1") is None and store.live_count() == 0


def test_the_live_directory_is_private(store):
    assert stat.S_IMODE(os.stat(store.live_directory).st_mode) == 0o700


def test_an_unknown_requested_reason_reads_as_none(store):
    with open(os.path.join(store.directory, "s1.end"), "w") as f:
        f.write("not a reason")
    assert store.requested_end("s1") is None
    assert replace(record(), state="RUNNING").state is State.RUNNING


def test_a_keys_live_sessions_are_counted_apart_and_its_limit_holds(store):
    assert store.admit(record("a1", key="alice"), 10, key_limit=2) is Admission.ADMITTED
    assert store.admit(record("b1", key="bob"), 10, key_limit=2) is Admission.ADMITTED
    assert store.admit(record("a2", key="alice"), 10, key_limit=2) is Admission.ADMITTED
    assert store.admit(record("a3", key="alice"), 10, key_limit=2) is Admission.OVER_QUOTA
    assert store.read("a3") is None
    assert (store.key_count("alice"), store.key_count("bob"), store.key_count("carol")) == (2, 1, 0)
    # Without a limit of its own a key is held to the server's alone.
    assert store.admit(record("a3", key="alice"), 4) is Admission.ADMITTED
    assert store.admit(record("c1", key="carol"), 4, key_limit=9) is Admission.AT_CAPACITY
    store.finish("a1", Reason.EXITED)
    assert store.key_count("alice") == 2 and store.live_count() == 3
    assert store.read("a1").key == "alice"


def test_the_key_limit_is_told_apart_from_the_servers_when_both_are_reached(store):
    assert store.admit(record("a1", key="alice"), 1, key_limit=1) is Admission.ADMITTED
    assert store.admit(record("a2", key="alice"), 1, key_limit=1) is Admission.OVER_QUOTA
    assert store.admit(record("b1", key="bob"), 1, key_limit=1) is Admission.AT_CAPACITY


def test_per_key_admission_is_exact_under_a_threaded_burst(tmp_path):
    """Two stores on one directory, as two workers, admitting from 24 threads at once."""
    import threading

    stores = [RecordStore(str(tmp_path / "shared")) for _ in range(2)]
    barrier = threading.Barrier(24)
    outcomes: list[tuple[str, Admission]] = []

    def admit(i: int) -> None:
        key = ("alice", "bob", "carol")[i % 3]
        limit = {"alice": 3, "bob": 5, "carol": None}[key]
        barrier.wait()
        outcomes.append((key, stores[i % 2].admit(record(f"s{i}", key=key), 20, key_limit=limit)))

    threads = [threading.Thread(target=admit, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    admitted = {
        k: sum(1 for key, a in outcomes if key == k and a is Admission.ADMITTED) for k in ("alice", "bob")
    }
    assert admitted == {"alice": 3, "bob": 5}
    assert sum(1 for _, a in outcomes if a is Admission.ADMITTED) == 3 + 5 + 8  # carol: no limit
    assert (stores[0].key_count("alice"), stores[1].key_count("bob")) == (3, 5)


def test_forget_and_sweep_clear_a_keys_live_marks(store):
    store.admit(record("a1", key="alice"), 5)
    store.admit(record("a2", key="alice"), 5)
    store.forget("a1")
    assert store.key_count("alice") == 1
    # A mark whose record is gone (a writer died in between) is swept.
    os.unlink(os.path.join(store.directory, "a2.json"))
    store.sweep(older_than=3600)
    assert store.key_count("alice") == 0
