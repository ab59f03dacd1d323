"""The warm pool's members in the state store: the atomic take, and what a crash leaves."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import uuid
from dataclasses import replace

import pytest
import test_engine
from fakes import FakeClient, FakeExecutor
from test_engine import CODE, END, reaper

from sandbox_engine.errors import EngineError, Kind
from sandbox_engine.executor import RuntimeUnavailable, SandboxRef
from sandbox_engine.pool_members import FileMembers
from sandbox_engine.reaper import STUCK, reap_instance
from sandbox_engine.records import Record
from sandbox_engine.removals import Removals
from sandbox_engine.states import State

# The engine's fixture, for the tests of crash recovery below.
make_engine = test_engine.make_engine


def ref(n: int, tty: bool = False) -> SandboxRef:
    return SandboxRef(id=f"c{n:04d}", language="python", tty=tty, running=True, name=f"se-x-pool-{n}")


def test_a_member_is_taken_once_and_then_names_its_session(tmp_path):
    members = FileMembers(str(tmp_path))
    members.add(ref(1))
    members.add(ref(2, tty=True))
    assert members.take("python", False, "s1") == ref(1)
    assert members.take("python", False, "s2") is None, "the only pipe sandbox is gone"
    assert members.take("c", False, "s3") is None
    assert [(t.ref, t.session_id) for t in members.taken()] == [(ref(1), "s1")]
    assert members.waiting() == [ref(2, tty=True)]
    members.settle(ref(1).id)
    assert members.taken() == []


def test_a_sandbox_made_for_a_session_is_entered_as_taken_and_claimed_once(tmp_path):
    members = FileMembers(str(tmp_path))
    made = replace(ref(1), running=False)
    members.adopt(made, "s1")
    assert members.waiting() == [], "offered to no other session"
    assert [(t.ref, t.session_id, t.owner) for t in members.taken()] == [(made, "s1", None)]
    assert not members.claim(made.id, "s2", "p1"), "another session's"
    assert members.claim(made.id, "s1", "p1")
    assert not members.claim(made.id, "s1", "p2")
    assert sorted(os.listdir(tmp_path / "pool")) == ["claimed", "taken"], "nothing written aside is left"


def test_a_taken_member_is_claimed_once(tmp_path):
    members = FileMembers(str(tmp_path))
    members.add(ref(1))
    assert not members.claim(ref(1).id, "s1", "p1"), "not taken yet: nothing to claim"
    members.take("python", False, "s1")
    assert members.claim(ref(1).id, "s1", "p1")
    assert not members.claim(ref(1).id, "s1", "p2")
    assert [(t.session_id, t.owner) for t in members.taken()] == [("s1", "p1")]
    members.settle(ref(1).id)
    assert members.taken() == []


def test_of_concurrent_takers_exactly_one_wins_each_member(tmp_path):
    members = FileMembers(str(tmp_path))
    for n in range(20):
        members.add(ref(n))
    won: list[SandboxRef | None] = []
    barrier = threading.Barrier(40)

    def take(i: int) -> None:
        barrier.wait()
        won.append(FileMembers(str(tmp_path)).take("python", False, f"s{i}"))

    threads = [threading.Thread(target=take, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    taken = [r.id for r in won if r is not None]
    assert sorted(taken) == sorted(ref(n).id for n in range(20)), "each member taken exactly once"
    assert won.count(None) == 20
    assert sorted(t.ref.id for t in members.taken()) == sorted(taken)


def _take_in_process(directory: str, session_id: str, start, results) -> None:
    start.wait()
    got = FileMembers(directory).take("python", False, session_id)
    results.put(got.id if got is not None else None)


def test_of_concurrent_worker_processes_exactly_one_wins_a_member(tmp_path):
    members = FileMembers(str(tmp_path))
    members.add(ref(7))
    context = multiprocessing.get_context("fork")
    start, results = context.Event(), context.Queue()
    processes = [
        context.Process(target=_take_in_process, args=(str(tmp_path), f"s{i}", start, results))
        for i in range(8)
    ]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(10)
    got = [results.get(timeout=5) for _ in processes]
    assert got.count(ref(7).id) == 1 and got.count(None) == 7


def test_a_dead_member_is_dropped_unless_taken_first(tmp_path):
    members = FileMembers(str(tmp_path))
    members.add(ref(1))
    members.add(ref(2))
    assert members.drop(ref(1).id)
    members.take("python", False, "s")
    assert not members.drop(ref(2).id), "taken: the session's now, not the pool's to drop"


# --- crash recovery through the reaper ------------------------------------------------------


def offer(engine, executor: FakeExecutor) -> SandboxRef:
    taken = executor.create(engine.sandbox_spec("python", False))
    engine.members.add(taken)
    return taken


def test_a_warm_sandbox_taken_by_a_session_never_attached_expires_with_it(make_engine, executor):
    engine = make_engine(pool_size="python=1", idle_timeout=0.05)
    offer(engine, executor)
    session_id = engine.create_session("python", CODE)
    time.sleep(0.1)
    reaper(engine).reap_once()
    described = engine.describe(session_id)
    assert (described["state"], described["reason"]) == ("TERMINATED", "idle_timeout")
    assert executor.list() == [], "its sandbox, still under the pool's name, is removed"
    assert engine.members.taken() == []


def test_a_taker_that_died_before_recording_its_session_leaves_nothing_behind(make_engine, executor):
    # A worker admitted the session, took the member (the store says whose it is) and died before
    # writing the record's reference: the reaper still finds the sandbox and expires the session.
    engine = make_engine(pool_size="python=1", idle_timeout=0.05)
    offer(engine, executor)
    session_id = str(uuid.uuid4())
    engine.records.admit(Record(session_id, "python", State.CREATED, time.time()), 10, None)
    assert engine.members.take("python", False, session_id) is not None
    time.sleep(0.1)
    reaper(engine).reap_once()
    assert executor.list() == []
    assert engine.describe(session_id)["reason"] == "idle_timeout"


def test_a_pool_sandbox_offered_to_nobody_is_reaped_on_the_second_look(make_engine, executor):
    # A refiller that died between the start and the offer: neither waiting nor taken.
    engine = make_engine(pool_size="python=1")
    executor.create(engine.sandbox_spec("python", False))
    [key] = executor.sandboxes
    executor.created_at[key] -= STUCK + 1
    passes = reaper(engine)
    passes.reap_once()
    assert len(executor.list()) == 1, "one look is not enough: a take may be under way"
    passes.reap_once()
    assert executor.list() == []


def test_a_stale_taken_entry_is_settled_and_its_claimed_sandbox_kept(make_engine, executor):
    engine = make_engine(pool_size="python=1")
    taken = offer(engine, executor)
    session_id = engine.create_session("python", CODE)
    # The claim renamed it, but its worker stopped before settling the entry: the owner is this
    # worker's, which still claims it (is_live), so the sandbox is no orphan.
    with engine._claim(session_id):
        executor.claim(session_id, engine.owner, taken)
        passes = reaper(engine)
        passes.reap_once()
        passes.reap_once()
        assert engine.members.taken() == []
        assert [info.session_id for info in executor.list()] == [session_id]


def test_a_warm_session_attaches_without_a_runtime_claim_and_a_second_client_is_refused(
    make_engine, executor
):
    engine = make_engine(pool_size="python=1")
    offer(engine, executor)
    session_id = engine.create_session("python", CODE)
    first = FakeClient()
    run = engine.attach(session_id, first)
    with pytest.raises(EngineError) as refused:
        engine.attach(session_id, FakeClient())
    assert refused.value.kind is Kind.ALREADY_ATTACHED
    engine._claims.join()
    assert executor.owners == {session_id: engine.owner}, "the runtime's name followed"
    executor.sandboxes[session_id].exit(0)
    assert run.wait(END)


def test_a_claim_whose_worker_died_before_the_runtime_heard_of_it_is_reaped(make_engine, executor):
    engine = make_engine(pool_size="python=1")
    taken = offer(engine, executor)
    session_id = engine.create_session("python", CODE)
    assert engine.members.claim(taken.id, session_id, "p999999999")  # a worker now gone
    reaper(engine).reap_once()
    assert executor.list() == []
    described = engine.describe(session_id)
    assert (described["state"], described["reason"]) == ("TERMINATED", "internal_error")
    passes = reaper(engine)
    passes.reap_once()  # the container is gone now: its entry is settled
    assert engine.members.taken() == []


def test_no_warm_take_while_the_reaper_finds_the_runtime_away(make_engine, executor):
    """A take asks the runtime nothing: while the reaper's last pass found it away, POST is told
    so (503) instead of being handed a warm sandbox nobody can reach; once it answers, takes go on."""
    engine = make_engine(pool_size="python=1")
    offer(engine, executor)
    executor.error = RuntimeUnavailable("the Docker daemon is not running")
    reaper(engine).run_once()
    with pytest.raises(EngineError) as refused:
        engine.create_session("python", CODE)
    assert refused.value.kind is Kind.RUNTIME_UNAVAILABLE
    assert "not running" in refused.value.message
    assert len(engine.members.waiting()) == 1, "the warm sandbox is still offered"
    executor.error = None
    reaper(engine).run_once()
    session_id = engine.create_session("python", CODE)
    assert engine.records.read(session_id).sandbox.running


def test_a_warm_sandbox_ended_and_waiting_for_its_removal_is_removed_once(make_engine, executor):
    # A batch run lets its sandbox go and queues its removal for a quiet moment. Its store entry
    # must stay until the removal: settled at once, the pool-named, stopped sandbox looked like
    # a pool's leftover to a reaper pass meanwhile, which removed it too (two removals of one
    # container at once leave Docker 20.10 a container it lists but no longer has).
    engine = make_engine(pool_size="python=1")
    engine.removals = Removals(quiet_for=lambda: 0.0, longest=60)  # no quiet moment: it waits
    offer(engine, executor)
    run_id = engine.create_session("python", CODE, batch=True)
    with engine.batch_sandbox(run_id) as sandbox:
        sandbox.start(b"print(1)")
        executor.sandboxes[next(iter(executor.sandboxes))].exit(0)
    engine.remove_later(sandbox)
    assert [t.session_id for t in engine.members.taken()] == [run_id], "its entry waits too"
    passes = reaper(engine)
    passes.reap_once()
    passes.reap_once()
    assert executor.removed == [], "the reaper left it to its removal"
    engine.removals.flush()
    assert executor.removed == [run_id] and engine.members.taken() == []


# --- a sandbox made for its session, under a pool's name (Docker's; see Claims.made) ----------


def test_a_sandbox_made_for_its_session_is_claimed_in_the_store_and_named_after(make_engine, executor):
    executor.names_like_pools = True
    engine = make_engine()  # no pool: the session's sandbox is made for it
    session_id = engine.create_session("python", CODE)
    [taken] = engine.members.taken()
    assert (taken.session_id, taken.owner, taken.ref.running) == (session_id, None, False)
    run = engine.attach(session_id, FakeClient())
    with pytest.raises(EngineError) as refused:
        engine.attach(session_id, FakeClient())
    assert refused.value.kind is Kind.ALREADY_ATTACHED
    assert executor.owners == {}, "no runtime claim on the client's path"
    engine._claims.join()
    assert executor.owners == {session_id: engine.owner}, "the runtime's name followed"
    assert engine.members.taken() == []
    executor.sandboxes[session_id].exit(0)
    assert run.wait(END)


def test_a_sandbox_made_for_a_session_never_attached_expires_with_it(make_engine, executor):
    executor.names_like_pools = True
    engine = make_engine(idle_timeout=0.05)
    session_id = engine.create_session("python", CODE)
    time.sleep(0.1)
    reaper(engine).reap_once()
    described = engine.describe(session_id)
    assert (described["state"], described["reason"]) == ("TERMINATED", "idle_timeout")
    assert executor.list() == [] and engine.members.taken() == []


def test_a_sandbox_made_for_a_session_whose_claimer_died_before_naming_it_is_reaped(make_engine, executor):
    executor.names_like_pools = True
    engine = make_engine()
    session_id = engine.create_session("python", CODE)
    made = engine.records.read(session_id).sandbox
    assert engine.members.claim(made.id, session_id, "p999999999")  # a worker now gone
    reaper(engine).reap_once()
    assert executor.list() == []
    assert engine.describe(session_id)["reason"] == "internal_error"


def test_reaping_an_instance_ends_the_sessions_whose_sandboxes_the_store_says_are_theirs(
    make_engine, executor
):
    # After a crash: a warm sandbox taken by one session, one made for another, both still under
    # a pool's name; a third, the pool's, waiting. Every sandbox goes, and both sessions end.
    executor.names_like_pools = True
    engine = make_engine(pool_size="python=2")
    offer(engine, executor)
    offer(engine, executor)
    warm_session = engine.create_session("python", CODE)
    engine.pool_sizes = {}  # the next one is made for its session
    made_session = engine.create_session("python", CODE)
    assert reap_instance(executor, engine.records) == 3
    assert executor.list() == []
    for session_id in (warm_session, made_session):
        assert engine.describe(session_id)["reason"] == "internal_error"
