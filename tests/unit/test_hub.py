"""The replay buffer and the hub: seq numbers, the bound, detach, grace, resume, takeover."""

from __future__ import annotations

import json
import threading

import pytest
from fakes import FakeClient

from sandbox_engine.errors import EngineError, Kind
from sandbox_engine.hub import Callbacks, Hubs, SessionHub
from sandbox_engine.replay import Gap, ReplayBuffer

END = 5.0


def out(n: int) -> dict:
    return {"type": "stdout", "data": f"line {n}\n"}


def test_every_message_gets_the_next_seq():
    buffer = ReplayBuffer(1 << 20)
    texts = [buffer.append(out(n)) for n in range(3)]
    assert [json.loads(t)["seq"] for t in texts] == [1, 2, 3]
    assert buffer.since(1) == (None, texts[1:])
    assert buffer.since(3) == (None, [])


def test_the_buffer_keeps_the_newest_within_its_bound_and_names_the_gap():
    one = len(ReplayBuffer(1 << 20).append(out(1)).encode())
    buffer = ReplayBuffer(3 * one)
    texts = [buffer.append(out(n)) for n in range(1, 6)]
    assert buffer.size <= 3 * one
    assert buffer.since(0) == (Gap(1, 2), texts[2:])
    assert buffer.since(2) == (None, texts[2:])
    assert Gap(1, 2).message() == {"type": "gap", "from": 1, "to": 2}


def test_the_newest_message_is_kept_whatever_its_size():
    buffer = ReplayBuffer(10)
    text = buffer.append(out(1))
    assert buffer.since(0) == (None, [text])


def test_a_seq_never_sent_cannot_be_resumed_from():
    buffer = ReplayBuffer(100)
    with pytest.raises(ValueError):
        buffer.since(1)


@pytest.fixture
def gone() -> threading.Event:
    return threading.Event()


def make_hub(gone: threading.Event, grace: float = 60.0, limit: int = 1 << 20) -> SessionHub:
    return SessionHub("s", limit, grace, on_gone=gone.set)


def test_a_client_that_cannot_be_sent_to_is_detached_and_the_program_runs_on(gone):
    hub = make_hub(gone)
    lost = FakeClient(fail_on=lambda m: m["data"] == "line 2\n")
    hub.attach(lost)
    for n in range(1, 4):
        hub.publish(out(n))
    assert lost.seqs == [1] and not hub.attached and not gone.is_set()
    back = FakeClient()
    hub.attach(back, after=1)
    hub.publish(out(4))
    assert back.seqs == [2, 3, 4]
    assert back.text() == "line 2\nline 3\nline 4\n"
    hub.stop()


def test_no_client_within_the_grace_ends_the_session(gone):
    hub = make_hub(gone, grace=0.1)
    client = FakeClient()
    hub.attach(client)
    hub.detach(client)
    assert gone.wait(END)
    hub.stop()


def test_a_client_back_within_the_grace_keeps_the_session(gone):
    hub = make_hub(gone, grace=0.3)
    first = FakeClient()
    hub.attach(first)
    hub.detach(first)
    hub.attach(FakeClient(), after=0)
    assert not gone.wait(0.6)
    hub.stop()


def test_without_a_grace_a_lost_client_ends_the_session_at_once(gone):
    hub = make_hub(gone, grace=0)
    client = FakeClient()
    hub.attach(client)
    hub.detach(client)
    assert gone.is_set()


def test_a_client_that_cannot_resume_ends_its_session_at_once(gone):
    hub = make_hub(gone)

    def fail(message: dict) -> None:
        raise ConnectionError("gone")

    hub.attach(Callbacks(fail, lambda: None))
    hub.publish(out(1))
    assert gone.is_set()


def test_a_normal_close_ends_the_session_unless_another_took_over(gone):
    hub = make_hub(gone)
    first, second = FakeClient(), FakeClient()
    hub.attach(first)
    hub.attach(second, after=0, takeover=True)
    hub.leave(first)
    assert not gone.is_set()
    hub.leave(second)
    assert gone.is_set()


def test_a_second_controller_is_refused_unless_it_takes_over(gone):
    hub = make_hub(gone)
    first, second = FakeClient(), FakeClient()
    hub.attach(first)
    hub.publish(out(1))
    with pytest.raises(EngineError) as refused:
        hub.attach(second, after=0)
    assert refused.value.kind is Kind.ALREADY_ATTACHED
    hub.attach(second, after=0, takeover=True)
    assert first.close_codes == [Kind.TAKEN_OVER.close_code]
    hub.publish(out(2))
    assert first.seqs == [1] and second.seqs == [1, 2]


def test_a_resume_past_the_bound_gets_a_gap_then_the_rest(gone):
    one = len(ReplayBuffer(1 << 20).append(out(1)).encode())
    hub = make_hub(gone, limit=2 * one)
    client = FakeClient()
    hub.attach(client)
    hub.detach(client)
    for n in range(1, 6):
        hub.publish(out(n))
    back = FakeClient()
    hub.attach(back, after=0)
    assert back.messages[0] == {"type": "gap", "from": 1, "to": 3}
    assert back.seqs == [None, 4, 5]
    hub.stop()


def test_a_session_that_ended_while_detached_replays_to_its_final_state(gone):
    hub = make_hub(gone)
    client = FakeClient()
    hub.attach(client)
    hub.publish(out(1))
    hub.detach(client)
    hub.publish(out(2))
    hub.publish({"type": "state", "state": "FINISHED"})
    hub.close()
    back = FakeClient()
    hub.attach(back, after=1)
    assert back.seqs == [2, 3] and back.final == {"type": "state", "state": "FINISHED"}
    assert back.closed.is_set() and not gone.is_set()


def test_a_bad_resume_seq_is_an_invalid_request(gone):
    hub = make_hub(gone)
    with pytest.raises(EngineError) as refused:
        hub.attach(FakeClient(), after=7)
    assert refused.value.kind is Kind.INVALID_REQUEST


def test_ended_hubs_are_forgotten_after_the_grace(gone):
    now = [0.0]
    hubs = Hubs(1 << 20, 60.0, clock=lambda: now[0])
    hub = hubs.open("s")
    hub.close()
    now[0] = 59.0
    assert hubs.get("s") is hub
    now[0] = 60.0
    assert hubs.get("s") is None
