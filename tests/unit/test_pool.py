"""The warm pool's refiller over the fake executor: what it creates, and what stops it."""

from __future__ import annotations

import fcntl
import os
import time

import pytest
from fakes import FakeExecutor

from sandbox_engine.config import Config
from sandbox_engine.languages import LANGUAGES
from sandbox_engine.pool import QUIET, Pool
from sandbox_engine.pool_members import FileMembers
from sandbox_engine.specs import sandbox_spec

CONFIG = Config()


def spec_for(language: str, tty: bool):
    return sandbox_spec(CONFIG, LANGUAGES[language], None, tty)


@pytest.fixture
def make_pool(tmp_path, executor: FakeExecutor):
    pools: list[Pool] = []

    def make(sizes: dict, capacity: int = 64) -> Pool:
        pool = Pool(executor, spec_for, sizes, capacity, str(tmp_path), FileMembers(str(tmp_path)))
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.stop()


def waiting(executor: FakeExecutor) -> list[tuple[str, bool]]:
    """The warm sandboxes the pool offers, as the runtime lists them."""
    return sorted((info.language, info.tty) for info in executor.list() if info.waiting)


def offered(pool: Pool) -> list[tuple[str, bool]]:
    """The warm sandboxes the pool offers, as the state store knows them."""
    return sorted((ref.language, ref.tty) for ref in pool.members.waiting())


def test_a_refill_creates_what_each_pool_lacks(make_pool, executor):
    pool = make_pool({("python", False): 2, ("python", True): 1})
    assert pool.refill() == 3
    assert waiting(executor) == [("python", False), ("python", False), ("python", True)]
    assert offered(pool) == waiting(executor), "every warm sandbox is offered in the store"
    assert all(spec.session_id is None for spec in executor.specs.values())
    assert pool.refill() == 0


def test_a_refill_stops_at_the_capacity_counting_sessions(make_pool, executor):
    executor.create(sandbox_spec(CONFIG, LANGUAGES["c"], "a-session", False))
    pool = make_pool({("python", False): 5}, capacity=3)
    assert pool.refill() == 2
    assert len(executor.list()) == 3


def test_a_dead_warm_sandbox_is_not_counted_and_is_replaced(make_pool, executor):
    pool = make_pool({("python", False): 2})
    pool.refill()
    first = next(info.name for info in executor.list())
    executor.sandboxes[first].exit(1)
    assert pool.refill() == 1
    assert len(waiting(executor)) == 2
    assert executor.refs[first].id not in {ref.id for ref in pool.members.waiting()}, "the dead one withdrawn"
    assert len(offered(pool)) == 2


def test_after_a_take_only_an_empty_pool_refills_before_things_are_quiet(make_pool, executor, tmp_path):
    pool = make_pool({("python", False): 2, ("python", True): 1})
    pool.wake()  # a session took a sandbox just now
    # The pipe pool is empty, so urgent: one sandbox; then the quiet rule holds the rest back.
    created = pool.refill()
    assert 1 <= created < 3
    past = os.stat(tmp_path / ".pool.took").st_mtime - QUIET - 1
    os.utime(tmp_path / ".pool.took", (past, past))
    assert pool.refill() == 3 - created


def test_only_one_worker_refills_at_a_time(make_pool, executor, tmp_path):
    first = make_pool({("python", False): 1})
    second = make_pool({("python", False): 1})
    with open(tmp_path / "pool" / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert first.refill() == 0 and second.refill() == 0
    assert first.refill() == 1
    assert second.refill() == 0


def test_the_refiller_thread_fills_and_stops(make_pool, executor):
    pool = make_pool({("python", False): 2})
    pool.start()
    deadline = time.monotonic() + 5
    while len(waiting(executor)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(waiting(executor)) == 2
    pool.stop()
    assert pool._thread is None
