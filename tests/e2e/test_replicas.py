"""Two replicas sharing one Redis (--redis-url), each with its own state directory: a session
posted to one is attached on the other, resumed through either, and counted once by both."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
import requests
from harness import Server, Transcript, shared_redis, shutdown, start_server
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sandbox_engine.reaper import STUCK

LINES = 40
COUNTER = (
    f"import time\nfor i in range({LINES}):\n    print(f'line {{i}}', flush=True)\n    time.sleep(0.05)\n"
)
EXPECTED = "".join(f"line {i}\n" for i in range(LINES))
SLEEPER = "import time\nprint('up', flush=True)\nwhile True:\n    time.sleep(0.05)\n"


@contextmanager
def two_replicas(docker_client, tmp_path_factory, **options) -> Iterator[tuple[Server, Server, str]]:
    """Two one-server replicas of one instance sharing one Redis (its URL third); the second
    stopped first (see Server.stop)."""
    url = shared_redis(tmp_path_factory)
    options = {"redis_url": url, "workers": 1, **options}
    first = start_server(docker_client, tmp_path_factory, **options)
    try:
        second = start_server(docker_client, tmp_path_factory, instance=first.instance, **options)
    except BaseException:
        shutdown(first)
        raise
    try:
        yield first, second, url
    finally:
        second.stop()
        shutdown(first)


@pytest.fixture
def replicas(docker_client, tmp_path_factory) -> Iterator[tuple[Server, Server]]:
    with two_replicas(docker_client, tmp_path_factory, reconnect_grace=20, max_sessions=3) as (
        first,
        second,
        _,
    ):
        yield first, second


def test_a_session_posted_to_one_replica_runs_on_the_other_and_both_tell_its_end(replicas):
    first, second = replicas
    session_id = first.create("print(input('name? '))")
    with second.attach(session_id) as ws:
        ws.read_stdout_until("name? ")
        assert first.session(session_id)["state"] == "RUNNING"
        ws.send({"type": "input", "data": "ada\n"})
        transcript = ws.read_to_end()
    assert transcript.text() == "name? ada\n"
    for replica in replicas:
        assert replica.session(session_id)["reason"] == "exited"


def test_max_sessions_is_one_count_across_the_replicas(replicas):
    first, second = replicas
    made = [first.create(SLEEPER), second.create(SLEEPER), first.create(SLEEPER)]
    for replica in replicas:
        refused = replica.post(SLEEPER)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "at_capacity"
    requests.delete(f"{second.url}/session/{made[0]}", timeout=30).raise_for_status()
    assert first.session(made[0])["reason"] == "killed"
    made.append(second.create(SLEEPER))
    for session_id in made[1:]:
        requests.delete(f"{first.url}/session/{session_id}", timeout=30).raise_for_status()


def test_a_resume_on_the_other_replica_is_relayed_every_byte_once_in_order(replicas):
    first, second = replicas
    session_id = first.create(COUNTER)
    attachments = [second.attach(session_id)]
    # Detach and resume, alternating replicas: through first (relayed over TCP to second, which
    # runs it), then second itself, then first again.
    for n, replica in enumerate((first, second, first)):
        attachments[-1].read_stdout_until(f"line {8 * (n + 1)}\n")
        attachments[-1].send({"type": "detach"})
        # What arrives before the server's close is seen; the resume asks for what follows it.
        with pytest.raises(ConnectionClosed):
            while True:
                attachments[-1].recv(10)
        attachments.append(replica.attach(session_id, resume=attachments[-1].last_seq))
    transcript = attachments[-1].read_to_end()
    assert "".join(Transcript(a.messages).text() for a in attachments) == EXPECTED
    assert [s for a in attachments for s in a.seqs] == list(range(1, attachments[-1].last_seq + 1))
    assert transcript.final["reason"] == "exited"


def test_a_resume_relayed_from_the_other_replica_is_refused_while_a_client_is_attached(replicas):
    first, second = replicas
    session_id = first.create(SLEEPER)
    with second.attach(session_id) as ws:
        ws.read_stdout_until("up")
        with pytest.raises(InvalidStatus) as refused:
            first.attach(session_id, resume=0)
        assert refused.value.response.status_code == 409
        taken = first.attach(session_id, resume=ws.last_seq, takeover=True)
        taken.send({"type": "kill"})
        assert taken.read_to_end().final["reason"] == "killed"


def test_a_resume_after_the_replica_that_ran_it_stopped_replays_from_redis(replicas):
    first, second = replicas
    session_id = first.create(COUNTER)
    away = second.attach(session_id)
    away.read_stdout_until("line 8\n")
    away.send({"type": "detach"})
    with pytest.raises(ConnectionClosed):
        while True:
            away.recv(10)
    deadline = time.monotonic() + 30
    while first.session(session_id)["state"] != "FINISHED":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # A rolling deploy: the replica that ran the session goes, and its buffer with it.
    second.stop()
    with first.attach(session_id, resume=away.last_seq) as back:
        transcript = back.read_to_end()
    assert Transcript(away.messages).text() + transcript.text() == EXPECTED
    assert away.seqs + back.seqs == list(range(1, back.last_seq + 1))
    assert transcript.final["reason"] == "exited"


def test_replicas_keep_one_warm_pool_which_either_takes_from_and_neither_reaps(
    docker_client, tmp_path_factory
):
    """The pool's members are in Redis too: one pool of the size asked, not one per replica; a
    session posted to one runs warm, attached on the other; and no replica takes the sandboxes
    the other offered for ones nobody offered (the reaper removes those after STUCK)."""
    pair = two_replicas(docker_client, tmp_path_factory, max_sessions=4, pool_size="python=2")
    with pair as (first, second, url):
        store = redis.Redis.from_url(url)
        try:
            _one_warm_pool(first, second, store)
        finally:
            store.close()


def _one_warm_pool(first: Server, second: Server, store: redis.Redis) -> None:
    def pool() -> set[str]:
        """The warm sandboxes waiting: a session's keeps its pool's name until Docker's rename
        follows (see claims) or its removal; the members' taken hash says it is a session's."""
        taken = {key.decode() for key in store.hkeys(f"se:{first.instance}:pool:taken")}
        return {
            c["Id"]
            for c in first.containers()
            if "-pool-" in c["Names"][0] and c["State"] == "running" and c["Id"] not in taken
        }

    assert wait_until(lambda: len(pool()) == 2, 60)
    time.sleep(3)  # both refillers had their turn: still one pool of two
    assert len(pool()) == 2
    for n in range(4):
        posted, attached = (first, second) if n % 2 == 0 else (second, first)
        warm = pool()
        session_id = posted.create("print('warm', input())")
        record = json.loads(store.get(f"se:{first.instance}:rec:{session_id}"))
        assert record["sandbox"]["id"] in warm
        with attached.attach(session_id) as ws:
            ws.send({"type": "input", "data": f"{n}\n"})
            assert ws.read_to_end().text() == f"warm {n}\n"
        assert wait_until(lambda: len(pool()) == 2, 60)
    # Past the reapers' STUCK (60 s) for sandboxes offered to nobody: both pools' sandboxes
    # are known to both replicas, so neither is removed.
    kept = pool()
    time.sleep(STUCK + 4)
    assert pool() == kept


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True
