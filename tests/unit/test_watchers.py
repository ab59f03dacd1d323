"""A hub's watchers: replay from the start or now, `live`, counts, the bound, revocation, and a
watcher that does not read, which never holds up the run or the controller."""

from __future__ import annotations

import threading
import time

import pytest
from fakes import FakeClient

from sandbox_engine.errors import EngineError, Kind
from sandbox_engine.hub import SessionHub

END = 5.0
LIVE = {"type": "live"}


def out(n: int) -> dict:
    return {"type": "stdout", "data": f"line {n}\n"}


FINAL = {"type": "state", "state": "FINISHED", "exitCode": 0, "reason": "exited", "signal": None}


class StuckClient(FakeClient):
    """A watcher that does not read: every send waits until it is let go."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()

    def send_text(self, text: str) -> None:
        assert self.go.wait(END)
        super().send_text(text)


@pytest.fixture
def hub():
    hub = SessionHub("s", 1 << 20, 60.0, max_watchers=2)
    yield hub
    hub.stop()


def until(predicate, timeout: float = END) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_from_the_start_the_held_then_live_then_the_rest(hub):
    controller = FakeClient()
    hub.attach(controller)
    hub.publish(out(1))
    watcher = FakeClient()
    hub.watch(watcher, from_start=True)
    hub.publish(out(2))
    hub.publish(FINAL)
    hub.close()
    assert watcher.closed.wait(END)
    assert watcher.messages == [out(1), LIVE, {"type": "watchers", "count": 1}, out(2), FINAL]
    assert watcher.seqs == [1, None, None, 2, 3]
    assert controller.messages == [out(1), {"type": "watchers", "count": 1}, out(2), FINAL]


def test_from_now_only_what_comes_after(hub):
    hub.attach(FakeClient())
    hub.publish(out(1))
    watcher = FakeClient()
    hub.watch(watcher, from_start=False)
    hub.publish(out(2))
    hub.close()
    assert watcher.closed.wait(END)
    assert watcher.messages == [LIVE, {"type": "watchers", "count": 1}, out(2)]


def test_a_resume_ends_its_replay_with_live_and_hears_the_count(hub):
    hub.attach(FakeClient())
    hub.publish(out(1))
    hub.watch(FakeClient(), from_start=False)
    again = FakeClient()
    hub.attach(again, after=0, takeover=True, resumed=True)
    assert again.messages == [out(1), LIVE, {"type": "watchers", "count": 1}]


def test_one_past_max_watchers_is_refused_and_leaving_makes_room(hub):
    controller = FakeClient()
    hub.attach(controller)
    first = hub.watch(FakeClient())
    hub.watch(FakeClient())
    with pytest.raises(EngineError) as refused:
        hub.watch(FakeClient())
    assert refused.value.kind is Kind.TOO_MANY_WATCHERS
    hub.unwatch(first)
    hub.watch(FakeClient())
    counts = [m["count"] for m in controller.messages if m["type"] == "watchers"]
    assert counts == [1, 2, 1, 2]


def test_revoking_closes_every_watcher_with_4403(hub):
    hub.attach(FakeClient())
    watchers = [FakeClient(), FakeClient()]
    for watcher in watchers:
        hub.watch(watcher)
    hub.revoke()
    for watcher in watchers:
        assert watcher.closed.wait(END)
        assert watcher.close_codes == [4403]
    assert hub.watcher_count == 0


def test_a_watcher_that_does_not_read_holds_up_nobody_and_catches_up_with_a_gap():
    one = len('{"type":"stdout","data":"line 1\\n","seq":1}')
    # A buffer (and so a watcher's bound) of about ten messages.
    hub = SessionHub("s", 10 * one, 60.0)
    try:
        controller = FakeClient()
        hub.attach(controller)
        stuck = StuckClient()
        hub.watch(stuck, from_start=False)
        started = time.monotonic()
        for n in range(100):
            hub.publish(out(n))
        hub.publish(FINAL)
        hub.close()
        # The run and the controller went on at once; the watcher has had nothing yet.
        assert time.monotonic() - started < 1.0
        assert controller.text() == "".join(f"line {n}\n" for n in range(100))
        assert stuck.messages == []
        stuck.go.set()
        assert stuck.closed.wait(END)
        gaps = [m for m in stuck.messages if m["type"] == "gap"]
        assert len(gaps) == 1 and stuck.messages[-1] == FINAL
        # What it got after the gap is the rest, in order, each once.
        seqs = [s for s in stuck.seqs if s is not None]
        assert seqs == sorted(set(seqs)) and seqs[-1] == 101
        assert seqs[seqs.index(gaps[0]["to"] + 1) :] == list(range(gaps[0]["to"] + 1, 102))
    finally:
        hub.stop()


def test_a_stuck_watcher_is_cut_when_the_hub_is_forgotten():
    hub = SessionHub("s", 1 << 20, 60.0)
    hub.attach(FakeClient())
    stuck = StuckClient()
    hub.watch(stuck)
    hub.publish(out(1))
    hub.stop()
    until(lambda: stuck.aborted)
    stuck.go.set()
