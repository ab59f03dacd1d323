"""Replay buffers copied to Redis: off the hub's path, bounded as the buffer is, read back as a
resume elsewhere needs them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import redis
from redisserver import redis_server

from sandbox_engine.hub import Hubs
from sandbox_engine.redis_replay import RUNNING_TTL, ReplayMirror, stored
from sandbox_engine.replay import Gap, ReplayBuffer, stored_since


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Iterator[redis.Redis]:
    with redis_server(str(tmp_path_factory.mktemp("redis"))) as url:
        client = redis.Redis.from_url(url)
        yield client
        client.close()


@pytest.fixture
def prefix() -> str:
    return f"se:t{uuid.uuid4().hex[:10]}:"


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


def test_the_copy_holds_what_the_buffer_holds_and_an_ended_one_lives_for_the_grace(client, prefix):
    buffer = ReplayBuffer(100)
    mirror = ReplayMirror(client, prefix, 100, grace=7)
    mirror.start()
    for n in range(12):
        text = buffer.append({"type": "stdout", "data": f"line {n}"})
        mirror.appended("s1", text)
        mirror.appended("s2", text)
    mirror.ended("s2")
    mirror.stop()
    assert stored(client, prefix, "s1") == buffer.since(0)[1] == stored(client, prefix, "s2")
    assert 0 < client.ttl(prefix + "replay:s2") <= 7 < client.ttl(prefix + "replay:s1") <= RUNNING_TTL
    assert stored(client, prefix, "nobody") is None


def test_the_newest_message_is_kept_whatever_its_size(client, prefix):
    mirror = ReplayMirror(client, prefix, 10, grace=7)
    for n in range(3):
        mirror.appended("s1", json.dumps({"type": "stdout", "data": "x" * 50, "seq": n + 1}))
    mirror.flush()
    assert [json.loads(t)["seq"] for t in stored(client, prefix, "s1")] == [3]


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
