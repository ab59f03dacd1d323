"""The key store: keyed hashes, revokes that every worker sees within a second, listings without
secrets; and the per-key request rates, exact across processes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import multiprocessing
import os
import stat
import time

import pytest

from sandbox_engine.config import Config
from sandbox_engine.keys import CHECK_INTERVAL, USE_INTERVAL, Key, KeysError, KeyStore, Scope
from sandbox_engine.rates import WINDOW, RateLimits


@pytest.fixture
def directory(tmp_path) -> str:
    return str(tmp_path / "keys")


@pytest.fixture
def store(directory) -> KeyStore:
    return KeyStore(directory)


def test_a_secret_is_256_random_bits_shown_once_and_stored_as_a_keyed_hash(store, directory):
    secret = store.create("alice")
    assert secret.startswith("se_")
    assert len(base64.urlsafe_b64decode(secret[3:] + "=")) == 32
    with open(store.path) as f:
        text = f.read()
    assert secret not in text and secret[3:] not in text
    (entry,) = json.loads(text)["keys"]
    with open(os.path.join(directory, "secret"), "rb") as f:
        server_secret = f.read()
    assert len(server_secret) == 32
    assert entry["hash"] == hmac.new(server_secret, secret.encode(), hashlib.sha256).hexdigest()
    # Not a plain hash: without the server's secret the file tells nothing.
    assert entry["hash"] != hashlib.sha256(secret.encode()).hexdigest()
    assert store.create("bob") != secret


def test_the_server_secret_and_the_keys_file_are_private(store, directory):
    store.create("alice")
    for path in (os.path.join(directory, "secret"), store.path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700


def test_a_key_is_found_by_its_secret_alone(store):
    secret = store.create("alice", frozenset({Scope.RUN}), max_sessions=3, rate=60)
    store.create("bob")
    key = store.find(secret)
    assert key is not None
    assert (key.name, key.scopes, key.max_sessions, key.rate) == ("alice", {Scope.RUN}, 3, 60)
    assert store.find(secret + "x") is None
    assert store.find(secret[:-1]) is None
    assert store.find("se_" + "A" * 43) is None
    assert store.find("") is None
    assert store.find("not a key at all, but long enough to look like one") is None


def test_another_instance_with_the_same_state_finds_the_key(store, directory):
    secret = store.create("alice")
    assert KeyStore(directory).find(secret).name == "alice"


def test_a_keys_file_elsewhere_is_read_with_the_state_directorys_secret(tmp_path, directory):
    keys_file = str(tmp_path / "etc" / "keys.json")
    os.makedirs(os.path.dirname(keys_file))
    secret = KeyStore(directory, keys_file).create("alice")
    assert os.path.exists(keys_file) and not os.path.exists(os.path.join(directory, "keys.json"))
    assert KeyStore(directory, keys_file).find(secret).name == "alice"
    # The file alone, under another state directory's secret, finds nothing.
    assert KeyStore(str(tmp_path / "other"), keys_file).find(secret) is None


def test_for_config_keeps_the_keys_in_the_instances_state_directory(tmp_path):
    config = Config(state_dir=str(tmp_path / "state"), instance="blue")
    secret = KeyStore.for_config(config).create("alice")
    assert os.path.exists(tmp_path / "state" / "blue" / "keys" / "keys.json")
    assert KeyStore.for_config(config).find(secret) is not None
    assert (
        KeyStore.for_config(Config(state_dir=str(tmp_path / "state"), instance="green")).find(secret) is None
    )


def test_a_revoke_is_seen_by_a_second_store_within_a_second(store, directory):
    """As a second worker would: it has read the file already, and only looks again when it
    changed, at most every half second."""
    secret = store.create("alice")
    other = KeyStore(directory)
    assert other.find(secret) is not None
    store.revoke("alice")
    revoked = time.monotonic()
    while other.find(secret) is not None:
        assert time.monotonic() - revoked < 1.0, "the revoke was not seen within a second"
        time.sleep(0.01)
    # A key made in its place, with its own secret, is seen as quickly; the old secret stays out.
    fresh = store.create("alice")
    made = time.monotonic()
    while other.find(fresh) is None:
        assert time.monotonic() - made < 1.0
        time.sleep(0.01)
    assert other.find(secret) is None


def test_a_worker_looks_at_the_file_at_most_every_half_second(directory):
    now = [100.0]
    store = KeyStore(directory, clock=lambda: now[0])
    assert not store.required()
    secret = KeyStore(directory).create("alice")
    assert store.find(secret) is None  # looked at t=100, before the key
    now[0] += CHECK_INTERVAL - 0.01
    assert store.find(secret) is None
    now[0] += 0.02
    assert store.find(secret) is not None
    assert store.required()


def test_a_file_changed_within_the_last_second_is_read_at_every_look(directory, monkeypatch):
    """Timestamps are a clock tick coarse: a rewrite in the tick of the last one may leave the
    file's signature as it was. Until the file has stood still for a second, it is read again."""
    now = [0.0]
    store = KeyStore(directory, clock=lambda: now[0])
    writer = KeyStore(directory)
    first = writer.create("alice")
    signature = [(1, 2, time.time_ns(), 0)]
    monkeypatch.setattr("sandbox_engine.keys._signature", lambda path: signature[0])
    assert store.find(first) is not None
    writer.revoke("alice")
    now[0] += CHECK_INTERVAL
    assert store.find(first) is None  # the same signature, but a young file: read again
    second = writer.create("alice")
    signature[0] = (1, 2, time.time_ns() - 2_000_000_000, 0)
    now[0] += CHECK_INTERVAL
    assert store.find(second) is not None  # read, and now settled
    writer.revoke("alice")
    now[0] += CHECK_INTERVAL
    assert store.find(second) is not None  # a settled, unchanged signature is not read again


def test_list_shows_names_scopes_limits_and_times_never_a_secret(store):
    secret = store.create("alice", frozenset({Scope.SESSION, Scope.ADMIN}), max_sessions=2, rate=30)
    store.create("bob")
    before = time.time()
    listed = {key.name: key for key in store.list()}
    assert set(listed) == {"alice", "bob"}
    alice = listed["alice"]
    assert alice.scopes == {Scope.SESSION, Scope.ADMIN} and alice.max_sessions == 2 and alice.rate == 30
    assert before - 5 < alice.created_at <= before and alice.last_used is None
    assert listed["bob"].scopes == {Scope.SESSION, Scope.RUN}
    assert listed["bob"].max_sessions is None and listed["bob"].rate is None
    shown = json.dumps([key.public() for key in store.list()])
    assert secret not in shown and secret[3:] not in shown and "hash" not in shown
    assert sorted(alice.public()) == ["createdAt", "lastUsed", "maxSessions", "name", "rate", "scopes"]


def test_last_used_is_noted_at_most_once_a_minute_per_worker(directory):
    now = [1000.0]
    store = KeyStore(directory, clock=lambda: now[0])
    store.create("alice")
    key = next(k for k in store.list() if k.name == "alice")
    store.used(key)
    first = store.list()[0].last_used
    assert first is not None and abs(first - time.time()) < 5
    used = os.path.join(directory, "used", "alice")
    os.utime(used, (first - 600, first - 600))
    store.used(key)  # within the minute: not written
    assert store.list()[0].last_used == pytest.approx(first - 600)
    now[0] += USE_INTERVAL
    store.used(key)
    assert store.list()[0].last_used > first - 5


def test_names_scopes_and_limits_are_checked(store):
    for name in ("", "-x", ".hidden", "a/b", "a b", "x" * 65, "../up"):
        with pytest.raises(KeysError):
            store.create(name)
    with pytest.raises(KeysError):
        store.create("alice", max_sessions=0)
    with pytest.raises(KeysError):
        store.create("alice", rate=-1)
    store.create("alice")
    with pytest.raises(KeysError, match="exists"):
        store.create("alice")
    with pytest.raises(KeysError, match="no key named"):
        store.revoke("nobody")
    assert [k.name for k in store.list()] == ["alice"]


def test_parse_scopes():
    from sandbox_engine.keys import parse_scopes

    assert parse_scopes("session,run") == {Scope.SESSION, Scope.RUN}
    assert parse_scopes(" admin ") == {Scope.ADMIN}
    with pytest.raises(KeysError):
        parse_scopes("session,root")
    with pytest.raises(KeysError):
        parse_scopes("")


def test_a_keys_file_that_cannot_be_read_lets_nobody_in(store, caplog):
    secret = store.create("alice")
    with open(store.path, "w") as f:
        f.write('{"keys": [{"name": "alice", "ha')
    other = KeyStore(store.directory)
    assert other.required()
    assert other.find(secret) is None
    assert "every request is refused" in caplog.text


def test_no_keys_file_means_no_key_is_required(store):
    assert not store.required()
    assert store.find("se_anything") is None
    assert store.list() == []


def test_key_public_is_plain_json():
    key = Key("k", frozenset({Scope.RUN, Scope.ADMIN}), 1, 2, 3.0, 4.0)
    assert key.public() == {
        "name": "k",
        "scopes": ["admin", "run"],
        "maxSessions": 1,
        "rate": 2,
        "createdAt": 3.0,
        "lastUsed": 4.0,
    }


# --- rates --------------------------------------------------------------------------------------


def test_a_rate_takes_that_many_requests_in_any_minute_then_says_how_long_to_wait(tmp_path):
    now = [10_000.0]
    rates = RateLimits(str(tmp_path / "rates"), clock=lambda: now[0])
    for _ in range(3):
        assert rates.take("alice", 3) is None
    assert rates.take("alice", 3) == WINDOW  # all three in this second: a minute from now
    assert rates.take("bob", 3) is None  # each key its own
    now[0] += 30
    assert rates.take("alice", 3) == WINDOW - 30
    now[0] += 29.9
    assert rates.take("alice", 3) == 1
    now[0] += 0.1  # the second of the first three has left the window
    assert rates.take("alice", 3) is None
    assert rates.take("alice", 3) is None
    assert rates.take("alice", 3) is None
    assert rates.take("alice", 3) == WINDOW


def test_the_wait_is_until_enough_old_requests_leave(tmp_path):
    now = [5000.0]
    rates = RateLimits(str(tmp_path / "rates"), clock=lambda: now[0])
    assert rates.take("k", 4) is None  # t=5000
    now[0] += 10
    assert rates.take("k", 4) is None  # t=5010
    assert rates.take("k", 4) is None
    now[0] += 10
    assert rates.take("k", 4) is None  # t=5020
    # Full: the request of t=5000 leaves at 5060, 40 s from now.
    assert rates.take("k", 4) == 40
    # A lower rate (the key made anew) needs two to leave: at 5070.
    assert rates.take("k", 2) == 50


def _hammer(directory: str, start: float, results) -> None:
    rates = RateLimits(directory)
    while time.time() < start:
        pass
    taken = sum(rates.take("shared", 50) is None for _ in range(40))
    results.put(taken)


def test_a_rate_is_exact_across_processes(tmp_path):
    """Four processes, as four workers, 40 requests each at once: exactly the rate is taken."""
    directory = str(tmp_path / "rates")
    RateLimits(directory)
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start = time.time() + 0.3
    processes = [context.Process(target=_hammer, args=(directory, start, results)) for _ in range(4)]
    for p in processes:
        p.start()
    taken = [results.get(timeout=30) for _ in processes]
    for p in processes:
        p.join(10)
    assert sum(taken) == 50, taken


@pytest.mark.parametrize(
    "text",
    ['{"keys": {}}', "[]", '{"keys": [1]}', '{"keys": [{"name": "a", "hash": "00", "scopes": ["root"]}]}'],
)
def test_a_keys_file_of_another_shape_refuses_every_key_and_the_cli_says_why(store, text):
    secret = store.create("alice")
    with open(store.path, "w") as f:
        f.write(text)
    other = KeyStore(store.directory)
    assert other.required() and other.find(secret) is None
    with pytest.raises(KeysError):
        store.list()
