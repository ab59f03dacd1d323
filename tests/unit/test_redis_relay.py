"""Resume across replicas: the owner's TCP address in Redis, and a listener that serves only those
who know the replicas' secret."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox_engine.errors import EngineError, Kind
from sandbox_engine.redis_relay import RedisOwners
from sandbox_engine.relay import LineReader, RelayClient, RelayServer, connect, probe


@pytest.fixture
def owner(redis_client, redis_prefix) -> Iterator[tuple[RedisOwners, list[dict]]]:
    """A replica's worker that runs session s1: it answers a probe, and echoes a relayed line."""
    owners = RedisOwners(redis_client, redis_prefix, "127.0.0.1")
    served: list[dict] = []

    def serve(request: dict, relayed: RelayClient, reader: LineReader) -> None:
        served.append(request)
        if request.get("probe"):
            relayed.close()
            return
        relayed.send_text(reader.line() or "")
        relayed.close(1000, "done")

    server = RelayServer(owners, serve)
    server.start()
    owners.advertise("s1")
    yield owners, served
    owners.withdraw("s1")
    server.stop()


def test_another_replica_reaches_the_sessions_owner_through_redis(redis_client, redis_prefix, owner):
    owners, served = owner
    # The other replica's view: the same Redis and instance, the secret found there.
    other = RedisOwners(redis_client, redis_prefix, "127.0.0.1")
    assert other.secret == owners.secret and len(other.secret) == 64
    probe(other, "s1", takeover=False)
    conn, reader = connect(other, {"session": "s1", "after": 3})
    try:
        conn.sendall(b'"hello"\n')
        assert reader.line() == 'm"hello"'
        assert reader.line() == 'c{"code": 1000, "reason": "done", "kind": null}'
    finally:
        conn.close()
    # The secret is checked, then left out of what the run's worker is handed.
    assert served == [
        {"session": "s1", "probe": True, "takeover": False, "watch": False},
        {"session": "s1", "after": 3},
    ]


def test_a_request_without_the_secret_is_not_served(redis_client, redis_prefix, owner):
    owners, served = owner
    stranger = RedisOwners(redis_client, redis_prefix, "127.0.0.1", secret="guessed")
    with pytest.raises(EngineError) as refused:
        probe(stranger, "s1", takeover=False)
    assert refused.value.kind is Kind.SESSION_ENDED and served == []


def test_a_session_nobody_advertises_or_withdrawn_has_ended(redis_client, redis_prefix, owner):
    owners, _ = owner
    for session_id in ("nobody", "s1"):
        if session_id == "s1":
            owners.withdraw("s1")
        with pytest.raises(EngineError) as ended:
            connect(owners, {"session": session_id})
        assert ended.value.kind is Kind.SESSION_ENDED


def test_an_owner_that_is_gone_reads_as_ended(redis_client, redis_prefix):
    owners = RedisOwners(redis_client, redis_prefix, "127.0.0.1")
    listener = owners.listen()
    owners.advertise("s2")
    listener.close()
    with pytest.raises(EngineError) as ended:
        connect(owners, {"session": "s2"})
    assert ended.value.kind is Kind.SESSION_ENDED
