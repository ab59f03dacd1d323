"""The Redis record store (--redis-url): what replicas share, against a real redis-server.

Each test has an instance of its own (the store's key prefix) on one server for the module; a
"replica" is another store, with its own Redis client, on the same instance.
"""

from __future__ import annotations

import multiprocessing
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis

from sandbox_engine import watch_tokens
from sandbox_engine.batch import RunRequest, SourceFile
from sandbox_engine.config import Config
from sandbox_engine.executor import SandboxRef
from sandbox_engine.keys import KeyStore
from sandbox_engine.rates import WINDOW
from sandbox_engine.records import Admission, Record
from sandbox_engine.redis_keys import RedisRateLimits, key_secret
from sandbox_engine.redis_records import RedisRecordStore
from sandbox_engine.states import Reason, State


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def instance() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def replicas(redis_url, instance, tmp_path) -> Iterator[list[RedisRecordStore]]:
    """Two stores as two replicas have them: one Redis, one instance, a directory each."""
    stores = [RedisRecordStore(redis_url, instance, str(tmp_path / f"r{n}")) for n in range(2)]
    yield stores
    client = redis.Redis.from_url(redis_url)
    for name in client.scan_iter(f"se:{instance}:*"):
        client.delete(name)
    client.close()


@pytest.fixture
def store(replicas) -> RedisRecordStore:
    return replicas[0]


def record(session_id: str = "s1", **fields) -> Record:
    fields = {"language": "python", "state": State.CREATED, "created_at": time.time(), **fields}
    return Record(session_id=session_id, **fields)


def test_a_record_written_by_one_replica_reads_back_on_the_other_with_its_types(replicas):
    ref = SandboxRef(id="c0ffee", language="c", tty=True, compile=("gcc", "main.c"), running=True, uid=200001)
    replicas[0].write(record(sandbox=ref, cols=80, rows=24))
    back = replicas[1].read("s1")
    assert back == record(sandbox=ref, cols=80, rows=24, created_at=back.created_at)
    assert back.state is State.CREATED and back.sandbox == ref
    assert replicas[1].read("nobody") is None


def test_admission_counts_every_replicas_live_sessions_and_an_end_makes_room(replicas):
    assert replicas[0].admit(record("a"), 2) is Admission.ADMITTED
    assert replicas[1].admit(record("b"), 2) is Admission.ADMITTED
    assert replicas[0].admit(record("c"), 2) is Admission.AT_CAPACITY
    assert replicas[1].read("c") is None
    assert replicas[1].finish("a", Reason.EXITED, exit_code=0)
    assert replicas[0].live_count() == 1
    assert replicas[0].admit(record("c"), 2) is Admission.ADMITTED


def test_a_keys_live_sessions_are_counted_apart_and_its_limit_holds(replicas):
    assert replicas[0].admit(record("k1", key="alice"), 10, key_limit=1) is Admission.ADMITTED
    assert replicas[1].admit(record("k2", key="alice"), 10, key_limit=1) is Admission.OVER_QUOTA
    assert replicas[1].admit(record("b1", key="bob"), 10, key_limit=1) is Admission.ADMITTED
    # The key's limit is told apart from the server's when both are reached.
    assert replicas[1].admit(record("k3", key="alice"), 2, key_limit=1) is Admission.OVER_QUOTA
    counts = (replicas[0].key_count("alice"), replicas[0].key_count("bob"), replicas[0].live_count())
    assert counts == (1, 1, 2)
    replicas[1].finish("k1", Reason.KILLED)
    assert replicas[0].key_count("alice") == 0
    assert replicas[0].admit(record("k2", key="alice"), 10, key_limit=1) is Admission.ADMITTED


def _admit_many(url: str, instance: str, directory: str, worker: int, answers) -> None:
    store = RedisRecordStore(url, instance, directory)
    admitted = [
        store.admit(record(f"w{worker}-{n}", key="k" if n % 2 else None), 12, key_limit=4) for n in range(20)
    ]
    answers.put([a.value for a in admitted])


def test_admission_is_exact_under_a_burst_from_several_processes(redis_url, instance, store, tmp_path):
    """Four processes (four replicas' workers) admit 80 sessions at once against a limit of 12,
    half of them of one key limited to 4: never one more, never one less."""
    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    processes = [
        context.Process(target=_admit_many, args=(redis_url, instance, str(tmp_path), n, answers))
        for n in range(4)
    ]
    for process in processes:
        process.start()
    results = [answer for _ in processes for answer in answers.get(timeout=60)]
    for process in processes:
        process.join(30)
    assert results.count("admitted") == 12
    assert store.live_count() == 12 and store.key_count("k") == 4
    assert results.count("at_capacity") + results.count("over_quota") == 68


def _finish_one(url: str, instance: str, directory: str, reason: str, go, answers) -> None:
    store = RedisRecordStore(url, instance, directory)
    go.wait(30)
    answers.put((reason, store.finish("s1", Reason(reason), exit_code=7)))


def test_of_endings_racing_from_several_processes_the_first_wins_once(redis_url, instance, store, tmp_path):
    told: list[Record] = []
    store.on_end = told.append
    store.admit(record(), 10)
    context = multiprocessing.get_context("fork")
    go, answers = context.Event(), context.Queue()
    reasons = [Reason.EXITED, Reason.KILLED, Reason.TIMEOUT, Reason.IDLE_TIMEOUT, Reason.INPUT_TIMEOUT]
    processes = [
        context.Process(target=_finish_one, args=(redis_url, instance, str(tmp_path), str(r), go, answers))
        for r in reasons
    ]
    for process in processes:
        process.start()
    go.set()
    results = dict(answers.get(timeout=60) for _ in processes)
    for process in processes:
        process.join(30)
    winners = [reason for reason, first in results.items() if first]
    assert len(winners) == 1
    final = store.read("s1")
    assert final.final and final.reason == Reason(winners[0]) and final.exit_code == 7
    assert store.live_count() == 0
    # Later endings change nothing, and are not told.
    assert not store.finish("s1", Reason.KILLED)
    assert store.read("s1") == final and told == []


def test_finish_tells_of_the_end_once_on_the_replica_that_recorded_it(replicas):
    told: list[Record] = []
    replicas[0].on_end = told.append
    replicas[0].admit(record(), 10)
    assert replicas[0].finish("s1", Reason.EXITED, exit_code=0, output_bytes=12)
    assert not replicas[1].finish("s1", Reason.KILLED)
    assert [(r.reason, r.exit_code, r.output_bytes) for r in told] == [(Reason.EXITED, 0, 12)]


def test_the_code_posted_on_one_replica_is_handed_over_on_the_other_and_then_forgotten(replicas):
    code = "print('héllo')\n".encode() + bytes(range(1, 256))
    replicas[0].admit(record(), 10)
    replicas[0].write_code("s1", code)
    assert replicas[1].read_code("s1") == code
    replicas[1].finish("s1", Reason.EXITED)
    assert replicas[0].read_code("s1") is None


def test_word_of_an_end_is_read_by_the_other_replica(replicas):
    assert replicas[1].requested_end("s1") is None
    replicas[0].request_end("s1", Reason.KILLED)
    assert replicas[1].requested_end("s1") is Reason.KILLED
    replicas[0].admit(record("s2"), 10)
    replicas[0].end("s2", Reason.IDLE_TIMEOUT, remove=lambda: None)
    assert replicas[1].read("s2").reason is Reason.IDLE_TIMEOUT


def test_an_end_whose_removal_fails_records_nothing_but_keeps_its_reason(store):
    store.admit(record(), 10)

    def fail() -> None:
        raise RuntimeError("docker is away")

    with pytest.raises(RuntimeError):
        store.end("s1", Reason.KILLED, remove=fail)
    assert store.read("s1").state is State.CREATED
    assert store.requested_end("s1") is Reason.KILLED


def test_a_runs_request_and_result_are_shared(replicas):
    request = RunRequest("python", (SourceFile("main.py", b"print(1)"),), stdin=b"x")
    replicas[0].write_request("r1", request)
    replicas[0].write_result("r1", {"error": ("at_capacity", "busy")})
    assert replicas[1].read_request("r1") == request
    assert replicas[1].read_result("r1") == {"error": ("at_capacity", "busy")}
    assert replicas[1].read_result("r2") is None and replicas[1].read_request("r2") is None


def test_forget_leaves_nothing_of_a_session_that_never_came_to_be(store, redis_url, instance):
    store.admit(record(key="alice"), 10)
    store.write_code("s1", b"x")
    store.forget("s1")
    assert store.read("s1") is None and store.read_code("s1") is None
    assert store.live_count() == 0 and store.key_count("alice") == 0


def test_a_watch_link_made_on_one_replica_holds_on_the_other_until_revoked(replicas):
    token = watch_tokens.mint(replicas[0], "s1")
    assert watch_tokens.valid(replicas[1], "s1", token) and not watch_tokens.valid(replicas[1], "s2", token)
    # Made at once on both: one secret, so both links hold.
    other = watch_tokens.mint(replicas[1], "s1")
    assert watch_tokens.valid(replicas[0], "s1", other)
    watch_tokens.revoke(replicas[1], "s1")
    assert not watch_tokens.valid(replicas[0], "s1", token)
    replicas[0].admit(record(), 10)
    again = watch_tokens.mint(replicas[0], "s1")
    replicas[0].forget("s1")
    assert not watch_tokens.valid(replicas[1], "s1", again)


def test_prune_forgets_by_age_and_count_never_a_live_session(redis_url, instance, tmp_path):
    clock = Clock()
    store = RedisRecordStore(redis_url, instance, str(tmp_path), clock=clock)
    for n in range(5):
        store.admit(record(f"e{n}"), 100)
        store.write_code(f"e{n}", b"x")
        store.finish(f"e{n}", Reason.EXITED)
        clock.now += 10
    store.admit(record("live"), 100)
    assert store.prune(older_than=1000, most=10) == 0
    # The two oldest beyond three kept, then those over 25 s old.
    assert store.prune(older_than=1000, most=3) == 2
    assert store.read("e0") is None and store.read("e1") is None and store.read("e2") is not None
    clock.now += 10
    assert store.prune(older_than=25, most=10) == 2
    assert [store.read(f"e{n}") is not None for n in range(5)] == [False, False, False, False, True]
    assert store.read("live") is not None and store.live_count() == 1


def test_sweep_drops_live_marks_whose_record_is_gone_or_ended(store, redis_url, instance):
    store.admit(record("gone", key="alice"), 10)
    store.admit(record("kept", key="alice"), 10)
    client = redis.Redis.from_url(redis_url)
    client.delete(f"se:{instance}:rec:gone")
    client.close()
    store.sweep(3600)
    assert store.live_count() == 1 and store.key_count("alice") == 1


def test_a_torn_record_or_unknown_reason_reads_as_none(store, redis_url, instance):
    client = redis.Redis.from_url(redis_url)
    client.set(f"se:{instance}:rec:torn", '{"session_id": "torn", "lang')
    client.set(f"se:{instance}:end:odd", "bored")
    client.close()
    assert store.read("torn") is None and store.requested_end("odd") is None


def test_a_server_reaps_its_instance_only_while_no_other_servers_worker_is_alive(store, redis_url, instance):
    assert not store.others_alive()
    # This process's own word: a reap runs in a process of its own, so its own pid is nobody.
    store.announce()
    assert not store.others_alive()
    client = redis.Redis.from_url(redis_url)
    # A worker on another host, within its few seconds; one on this host whose process is gone.
    client.set(f"se:{instance}:worker:{socket.gethostname()}:{2**22 + 1}", 1, ex=5)
    assert not store.others_alive()
    client.set(f"se:{instance}:worker:elsewhere:123", 1, ex=5)
    assert store.others_alive()
    client.close()


def test_a_keys_rate_is_one_count_across_replicas_and_says_when_to_come_back(redis_url, instance):
    replicas = [RedisRateLimits(redis_url, instance) for _ in range(2)]
    taken = [replicas[n % 2].take("alice", 5) for n in range(7)]
    assert taken[:5] == [None] * 5
    # Refused, and told to come back when the oldest second leaves the minute: within it.
    assert all(wait is not None and 1 <= wait <= WINDOW for wait in taken[5:])
    assert replicas[1].take("bob", 1) is None


def test_every_replica_hashes_keys_with_one_secret_made_once(redis_url, instance, tmp_path):
    secrets = {key_secret(redis_url, instance) for _ in range(3)}
    assert len(secrets) == 1 and len(secrets.pop()) == 32
    config = Config(state_dir=str(tmp_path / "a"), instance=instance, redis_url=redis_url)
    keys_file = str(tmp_path / "keys.json")
    made = KeyStore.for_config(replace(config, keys_file=keys_file)).create("alice")
    other = KeyStore.for_config(replace(config, state_dir=str(tmp_path / "b"), keys_file=keys_file))
    assert other.find(made).name == "alice"
