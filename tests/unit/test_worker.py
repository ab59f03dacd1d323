"""The worker: the engine, its pool and its reaper started together and stopped together."""

from __future__ import annotations

import threading

from fakes import FakeExecutor

from sandbox_engine.config import Config
from sandbox_engine.records import RecordStore
from sandbox_engine.worker import Worker


def package_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("se-")}


def test_a_worker_starts_its_threads_once_and_joins_them_on_shutdown(tmp_path, executor: FakeExecutor):
    config = Config(state_dir=str(tmp_path), pool_size="python=1")
    worker = Worker(config, executor, RecordStore(str(tmp_path / "records")))
    before = package_threads()
    worker.ensure_started()
    worker.ensure_started()
    started = package_threads() - before
    assert started == {"se-reaper", "se-pool", "se-relay"}

    worker.shutdown()
    assert package_threads() - before == set(), "shutdown returned before its threads ended"


def test_without_a_pool_only_the_reaper_and_the_relay_run(tmp_path, executor: FakeExecutor):
    worker = Worker(Config(state_dir=str(tmp_path)), executor, RecordStore(str(tmp_path / "records")))
    assert worker.pool is None
    before = package_threads()
    worker.ensure_started()
    assert package_threads() - before == {"se-reaper", "se-relay"}
    worker.shutdown()
    assert package_threads() - before == set()


def test_the_pool_may_fill_on_top_of_max_sessions_and_no_further(tmp_path, executor: FakeExecutor):
    config = Config(state_dir=str(tmp_path), max_sessions=3, pool_size="python=2,python/tty=1")
    worker = Worker(config, executor, RecordStore(str(tmp_path / "records")))
    assert worker.pool.capacity == 3 + 2 + 1
    engine = worker.engine
    for _ in range(3):
        engine.create_session("c", "int main(){}")
    assert worker.pool.refill() == 3
    assert len(executor.list()) == 6
    worker.shutdown()
