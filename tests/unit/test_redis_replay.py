"""Replay buffers copied to Redis: off the hub's path, bounded as the buffer is, read back as a
resume elsewhere needs them."""

from __future__ import annotations

import json

import pytest

from sandbox_engine.hub import Hubs
from sandbox_engine.redis_replay import RUNNING_TTL, ReplayMirror, stored
from sandbox_engine.replay import Gap, ReplayBuffer, stored_since


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def appended(self, session_id: str, text: str) -> None:
        self.calls.append(("text", session_id, text))

    def ended(self, session_id: str) -> None:
        self.calls.append(("ended", session_id))


def test_every_published_text_and_the_end_are_told_to_the_mirror_in_order():
    hubs = Hubs(1 << 20, grace=60)
    hubs.mirror = mirror = Recorder()
    hub = hubs.open("s1")
    hub.publish({"type": "stdout", "data": "a"})
    hub.publish({"type": "state", "state": "FINISHED"})
    hub.close()
    assert mirror.calls == [
        ("text", "s1", '{"type":"stdout","data":"a","seq":1}'),
        ("text", "s1", '{"type":"state","state":"FINISHED","seq":2}'),
        ("ended", "s1"),
    ]
    hubs.clear()


def test_the_copy_holds_what_the_buffer_holds_and_an_ended_one_lives_for_the_grace(
    redis_client, redis_prefix
):
    buffer = ReplayBuffer(100)
    mirror = ReplayMirror(redis_client, redis_prefix, 100, grace=7)
    mirror.start()
    for n in range(12):
        text = buffer.append({"type": "stdout", "data": f"line {n}"})
        mirror.appended("s1", text)
        mirror.appended("s2", text)
    mirror.ended("s2")
    mirror.stop()
    assert (
        stored(redis_client, redis_prefix, "s1")
        == buffer.since(0)[1]
        == stored(redis_client, redis_prefix, "s2")
    )
    assert (
        0
        < redis_client.ttl(redis_prefix + "replay:s2")
        <= 7
        < redis_client.ttl(redis_prefix + "replay:s1")
        <= RUNNING_TTL
    )
    assert stored(redis_client, redis_prefix, "nobody") is None


def test_the_newest_message_is_kept_whatever_its_size(redis_client, redis_prefix):
    mirror = ReplayMirror(redis_client, redis_prefix, 10, grace=7)
    for n in range(3):
        mirror.appended("s1", json.dumps({"type": "stdout", "data": "x" * 50, "seq": n + 1}))
    mirror.flush()
    assert [json.loads(t)["seq"] for t in stored(redis_client, redis_prefix, "s1")] == [3]


def test_what_a_resume_missed_is_read_from_the_copy_as_from_the_buffer():
    buffer = ReplayBuffer(60)
    for n in range(5):
        buffer.append({"type": "stdout", "data": str(n)})
    texts = buffer.since(0)[1]
    for after in range(6):
        assert stored_since(texts, after) == buffer.since(after)
    assert stored_since(texts, 0)[0] == Gap(1, 5 - len(texts))
    with pytest.raises(ValueError):
        stored_since(texts, 6)
