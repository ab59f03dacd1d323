"""The record store: what every worker reads of a session, admission, and the end of a session."""

from __future__ import annotations

import os
import stat
import time
from dataclasses import replace

import pytest

from sandbox_engine.executor import ExecutorError, SandboxRef
from sandbox_engine.records import Record, RecordStore
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
    assert store.admit(record("a"), 2)
    assert store.admit(record("b"), 2)
    assert not store.admit(record("c"), 2)
    assert store.read("c") is None
    store.finish("a", Reason.KILLED)
    assert store.live_count() == 1
    assert store.admit(record("c"), 2)


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


def test_prune_forgets_old_ended_records_and_stray_live_marks(store):
    store.write(record("old"))
    store.finish("old", Reason.EXITED)
    store.write(record("live"))
    # A live mark whose record is gone: its writer died in between.
    open(os.path.join(store.live_directory, "ghost"), "w").close()
    past = time.time() - 100
    os.utime(os.path.join(store.directory, "old.json"), (past, past))
    store.prune(older_than=50)
    assert store.read("old") is None
    assert store.read("live") is not None
    assert sorted(os.listdir(store.live_directory)) == ["live"]


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
