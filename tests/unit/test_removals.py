"""Removals wait for a quiet moment, never long, and all go at shutdown."""

from __future__ import annotations

import threading
import time

import pytest

from sandbox_engine.removals import Removals


@pytest.fixture
def make():
    made: list[Removals] = []

    def removals(*args, **kwargs) -> Removals:
        made.append(Removals(*args, **kwargs))
        return made[-1]

    yield removals
    for removals in made:
        removals.flush(5)


class Clock:
    """Seconds since the last session started, as the test says."""

    def __init__(self) -> None:
        self.quiet_for = 0.0

    def __call__(self) -> float:
        return self.quiet_for


def test_a_removal_waits_while_sessions_keep_starting_then_goes_once_quiet(make):
    clock = Clock()
    removals = make(clock, quiet=0.2, longest=30)
    done = threading.Event()
    removals.add("s1", done.set)
    assert removals.holds("s1")
    assert not done.wait(0.5), "removed while sessions were starting"
    clock.quiet_for = 1.0
    assert done.wait(5)
    deadline = time.monotonic() + 5
    while removals.holds("s1") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not removals.holds("s1")


def test_no_removal_waits_longer_than_its_longest(make):
    removals = make(lambda: 0.0, quiet=10, longest=0.3)
    done = threading.Event()
    started = time.monotonic()
    removals.add("s1", done.set)
    assert done.wait(5)
    assert 0.25 <= time.monotonic() - started < 3


def test_too_many_waiting_go_at_once_oldest_first(make):
    removals = make(lambda: 0.0, quiet=10, longest=30, most=3)
    order: list[str] = []
    for n in range(5):
        removals.add(f"s{n}", lambda n=n: order.append(f"s{n}"))
    deadline = time.monotonic() + 5
    while len(order) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert order == ["s0", "s1"], "past `most` waiting, the oldest go, until `most` are left"


def test_flush_removes_everything_now_and_a_failed_removal_stops_nothing(make):
    removals = make(lambda: 0.0, quiet=10, longest=30)
    order: list[str] = []

    def fail() -> None:
        raise RuntimeError("docker went away")

    removals.add("bad", fail)
    for n in range(3):
        removals.add(f"s{n}", lambda n=n: order.append(f"s{n}"))
    removals.flush(5)
    assert order == ["s0", "s1", "s2"]
    assert not any(removals.holds(k) for k in ("bad", "s0", "s1", "s2"))
    # After shutdown's flush, a late removal is not kept waiting.
    late = threading.Event()
    removals.add("late", late.set)
    assert late.wait(5)
