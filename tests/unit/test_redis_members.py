"""The warm pool's members in Redis, shared by replicas: one take and one claim per member, the
refiller's lock, and a claim's owner judged only by its own host."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis

from sandbox_engine.executor import SandboxRef
from sandbox_engine.redis_members import RedisMembers


@pytest.fixture
def replicas(redis_url) -> Iterator[list[RedisMembers]]:
    """Two replicas' views of one instance's pool, each with a client of its own."""
    prefix = f"se:t{uuid.uuid4().hex[:10]}:"
    clients = [redis.Redis.from_url(redis_url) for _ in range(2)]
    yield [RedisMembers(client, prefix) for client in clients]
    for name in clients[0].scan_iter(prefix + "*"):
        clients[0].delete(name)
    for client in clients:
        client.close()


def ref(n: int, tty: bool = False) -> SandboxRef:
    return SandboxRef(id=f"c{n:04d}", language="python", tty=tty, running=True, name=f"se-x-pool-{n}")


def test_a_member_offered_by_one_replica_is_taken_once_by_any(replicas):
    one, other = replicas
    one.add(ref(1))
    one.add(ref(2, tty=True))
    assert other.take("python", False, "s1") == ref(1)
    assert one.take("python", False, "s2") is None, "the only pipe sandbox is gone"
    assert [(t.ref, t.session_id, t.owner) for t in one.taken()] == [(ref(1), "s1", None)]
    assert one.waiting() == [ref(2, tty=True)] == other.waiting()
    other.settle(ref(1).id)
    assert one.taken() == []


def test_a_sandbox_made_for_a_session_on_one_replica_is_claimed_once_on_any(replicas):
    one, other = replicas
    made = replace(ref(1), running=False)
    one.adopt(made, "s1")
    assert other.waiting() == [], "offered to no other session"
    assert [(t.ref, t.session_id, t.owner) for t in other.taken()] == [(made, "s1", None)]
    assert not other.claim(made.id, "s2", "p1"), "another session's"
    assert other.claim(made.id, "s1", "p1")
    assert not one.claim(made.id, "s1", "p2")
    other.settle(made.id)
    assert one.taken() == []


def test_a_taken_member_is_claimed_once_and_its_owner_read_back_as_its_host_wrote_it(replicas):
    one, other = replicas
    one.add(ref(1))
    assert not other.claim(ref(1).id, "s1", "p1"), "not taken yet: nothing to claim"
    one.take("python", False, "s1")
    assert not other.claim(ref(1).id, "s2", "p1"), "another session's"
    assert other.claim(ref(1).id, "s1", "p1")
    assert not one.claim(ref(1).id, "s1", "p2")
    assert [(t.session_id, t.owner) for t in one.taken()] == [("s1", "p1")]
    # A replica on another host sees the owner with its host: not a pid it can judge.
    other._host = "elsewhere"
    assert [t.owner for t in other.taken()] == [f"p1@{one._host}"]


def test_of_concurrent_takers_on_two_replicas_exactly_one_wins_each_member(replicas):
    for n in range(20):
        replicas[0].add(ref(n))
    won: list[SandboxRef | None] = []
    barrier = threading.Barrier(40)

    def take(n: int) -> None:
        barrier.wait()
        won.append(replicas[n % 2].take("python", False, f"s{n}"))

    threads = [threading.Thread(target=take, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    taken = [r.id for r in won if r is not None]
    assert sorted(taken) == sorted(ref(n).id for n in range(20))
    assert replicas[1].waiting() == []


def test_a_dead_member_is_dropped_unless_taken_first(replicas):
    one, other = replicas
    one.add(ref(1))
    one.add(ref(2))
    assert other.drop(ref(1).id)
    assert not one.drop(ref(1).id)
    assert one.take("python", False, "s1") == ref(2)
    assert not other.drop(ref(2).id), "taken: its session's now"
    assert one.waiting() == []


def test_one_refiller_of_all_replicas_holds_the_lock(replicas):
    one, other = replicas
    with one.refilling() as held:
        assert held
        with other.refilling() as also:
            assert not also
    with other.refilling() as held:
        assert held
