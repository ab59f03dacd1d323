"""Fixtures for unit tests: a fake executor, and a check that every test stops its threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from fakes import FakeExecutor
from hostbox import hostbox, se_run_binary  # noqa: F401 - fixtures for the launchers' tests
from redisserver import redis_client, redis_prefix, redis_url  # noqa: F401 - the Redis stores' tests'

# Every thread the package starts is named se-<role>: the reaper, the pool's refiller, and each
# run's pump, watchdog and killer.
OWNED_THREADS = "se-"


@pytest.fixture(autouse=True)
def no_thread_left() -> Iterator[None]:
    """Runs last: whatever a test started must have ended once its fixtures cleaned up."""
    before = set(threading.enumerate())
    yield
    started = [t for t in threading.enumerate() if t not in before and t.name.startswith(OWNED_THREADS)]
    for thread in started:
        thread.join(timeout=5)
    left = [t.name for t in started if t.is_alive()]
    assert not left, f"threads left running: {left}"


@pytest.fixture
def executor() -> Iterator[FakeExecutor]:
    fake = FakeExecutor()
    yield fake
    # End every program still running so no pump waits on a fake stream.
    fake.error = None
    for session_id in list(fake.sandboxes):
        fake.remove(session_id)
