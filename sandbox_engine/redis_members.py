"""The warm pool's members in Redis, for replicas that share their records (`--redis-url`): one
pool for all of them, as one server's workers share one in the state directory (see
pool_members). Every replica then knows every member, so that none takes another's waiting
sandbox for one nobody offered (and reaps it), and a session taken on one replica is claimed on
whichever its client reaches.

Keys under `se:<instance>:pool:`: `ref` (a hash: each member's reference), `waiting:<kind>` (a set
per language and mode), `kinds`, `taken` (a hash: `<session> <time> <owner>` per taken or claimed
member) and `lock` (the refiller's). A take is one SPOP, a claim one script: exactly one wins.

A claim's owner is a worker's `p<pid>`, which only its own host can judge: it is kept with the
host's name, and another host's reads back as `p<pid>@<host>`, which the executors leave to that
host (see Executor.orphaned).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict

import redis

from .executor import SandboxRef
from .pool_members import Members, Taken

# KEYS: waiting set, taken hash, ref hash. ARGV: session, time. The member, taken; nil: none left.
_TAKE = """
local id = redis.call('SPOP', KEYS[1])
if not id then return nil end
redis.call('HSET', KEYS[2], id, ARGV[1] .. ' ' .. ARGV[2] .. ' ')
return redis.call('HGET', KEYS[3], id)
"""
# KEYS: taken hash. ARGV: id, session, time, owner. 1: claimed; 0: not this session's, or claimed.
_CLAIM = """
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry then return 0 end
local session, at, owner = string.match(entry, '^(%S+) (%S+) ?(%S*)$')
if session ~= ARGV[2] or owner ~= '' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])
return 1
"""
# KEYS: lock. ARGV: token. Released only by its holder.
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Longer than any refill pass takes to start one sandbox; a holder that died frees it so.
LOCK_FOR_MS = 60_000


class RedisMembers(Members):
    def __init__(self, client: redis.Redis, prefix: str, clock: Callable[[], float] = time.time) -> None:
        self._redis = client
        self._prefix = prefix + "pool:"
        self._clock = clock
        self._host = socket.gethostname()
        self._take = client.register_script(_TAKE)
        self._claim = client.register_script(_CLAIM)
        self._unlock = client.register_script(_UNLOCK)

    def _key(self, name: str) -> str:
        return self._prefix + name

    def _waiting_key(self, language: str, tty: bool) -> str:
        return self._key(f"waiting:{language}{'.tty' if tty else ''}")

    def add(self, ref: SandboxRef) -> None:
        kind = self._waiting_key(ref.language, ref.tty)
        with self._redis.pipeline() as pipe:
            pipe.hset(self._key("ref"), ref.id, json.dumps(asdict(ref)))
            pipe.sadd(self._key("kinds"), kind)
            pipe.sadd(kind, ref.id)
            pipe.execute()

    def take(self, language: str, tty: bool, session_id: str) -> SandboxRef | None:
        keys = [self._waiting_key(language, tty), self._key("taken"), self._key("ref")]
        raw = self._take(keys=keys, args=[session_id, repr(self._clock())])
        return _ref(raw)

    def adopt(self, ref: SandboxRef, session_id: str) -> None:
        with self._redis.pipeline() as pipe:
            pipe.hset(self._key("ref"), ref.id, json.dumps(asdict(ref)))
            pipe.hset(self._key("taken"), ref.id, f"{session_id} {self._clock()!r} ")
            pipe.execute()

    def claim(self, container_id: str, session_id: str, owner: str) -> bool:
        args = [container_id, session_id, repr(self._clock()), f"{owner}@{self._host}"]
        return bool(self._claim(keys=[self._key("taken")], args=args))

    def waiting(self) -> list[SandboxRef]:
        ids = set()
        for kind in self._redis.smembers(self._key("kinds")):
            ids |= self._redis.smembers(kind)
        return self._refs(sorted(ids))

    def _refs(self, ids: list) -> list[SandboxRef]:
        raws = self._redis.hmget(self._key("ref"), ids) if ids else []
        return [ref for raw in raws if (ref := _ref(raw)) is not None]

    def taken(self) -> list[Taken]:
        entries = self._redis.hgetall(self._key("taken"))
        refs = {ref.id: ref for ref in self._refs(list(entries))}
        found = []
        for raw_id, raw in entries.items():
            session_id, at, owner = (raw.decode().split(" ") + ["", ""])[:3]
            ref = refs.get(raw_id.decode())
            if ref is not None and session_id:
                found.append(Taken(ref, session_id, float(at), self._owner(owner)))
        return found

    def _owner(self, stored: str) -> str | None:
        if not stored:
            return None
        owner, _, host = stored.rpartition("@")
        return owner if host == self._host else stored

    def drop(self, container_id: str) -> bool:
        for kind in self._redis.smembers(self._key("kinds")):
            if self._redis.srem(kind, container_id):
                self._redis.hdel(self._key("ref"), container_id)
                return True
        return False

    def settle(self, container_id: str) -> None:
        with self._redis.pipeline() as pipe:
            pipe.hdel(self._key("taken"), container_id)
            pipe.hdel(self._key("ref"), container_id)
            pipe.execute()

    @contextlib.contextmanager
    def refilling(self) -> Iterator[bool]:
        token = secrets.token_hex(8)
        held = bool(self._redis.set(self._key("lock"), token, nx=True, px=LOCK_FOR_MS))
        try:
            yield held
        finally:
            if held:
                self._unlock(keys=[self._key("lock")], args=[token])


def _ref(raw: bytes | None) -> SandboxRef | None:
    if raw is None:
        return None
    try:
        return SandboxRef(**json.loads(raw))
    except (ValueError, TypeError):
        return None
