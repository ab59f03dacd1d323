"""Session records in Redis (--redis-url), so that replicas on several machines share them: any
replica answers any request about any session, and admits against one exact --max-sessions.

The same story as the state directory's (see records.RecordStore), in Redis keys under
`se:<instance>:`:

- `rec:<id>` the record's JSON; `code:<id>` the program until it starts; `end:<id>` word of an
  end; `result:<id>` and `request:<id>` a batch run's;
- `live`, a set of the sessions not yet ended, and `live:<key>` the same per API key (with
  `keys` naming the keys that have one): admission counts these;
- `ended`, a sorted set of ended sessions by the time they ended, which prune reads.

Admission is one Lua script (Redis runs a script alone, so no two admissions interleave); the
first ending wins by WATCH/MULTI on the record; every other write is one MULTI, so a record and
its live marks never disagree.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import asdict

import redis

from .batch import RunRequest, dump_request, dump_result, load_request, load_result
from .records import Admission, Record
from .redis_members import RedisMembers
from .redis_relay import RedisOwners
from .states import Reason

# KEYS: live, the key's live set ("" when keyless), the record, the keys set.
# ARGV: limit, key limit ("" when none), the record's JSON, its id, the key's name ("" when none).
_ADMIT = """
if ARGV[2] ~= '' and redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[2]) then return 2 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 1 end
redis.call('SET', KEYS[3], ARGV[3])
redis.call('SADD', KEYS[1], ARGV[4])
if ARGV[5] ~= '' then
  redis.call('SADD', KEYS[2], ARGV[4])
  redis.call('SADD', KEYS[4], ARGV[5])
end
return 0
"""
_ADMISSIONS = {0: Admission.ADMITTED, 1: Admission.AT_CAPACITY, 2: Admission.OVER_QUOTA}
# How long a worker counts as alive after it last said so (its reaper says so every second).
ALIVE_FOR = 5
# A session's own keys, each `<kind>:<id>`.
_KINDS = ("rec", "code", "end", "result", "request", "watch")


class RedisRecordStore:
    """The record store of replicas that share one Redis (see store.Store)."""

    def __init__(
        self,
        url: str,
        instance: str,
        directory: str,
        clock: Callable[[], float] = time.time,
        client: redis.Redis | None = None,
    ) -> None:
        # Short timeouts: a Redis that does not answer is an error for the request, not a hang.
        self._redis = client or redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self._prefix = f"se:{instance}:"
        self.directory = directory
        self.on_end: Callable[[Record], None] = lambda record: None
        self._clock = clock
        self._admit = self._redis.register_script(_ADMIT)

    def _key(self, kind: str, name: str | None = None) -> str:
        return f"{self._prefix}{kind}:{name}" if name is not None else f"{self._prefix}{kind}"

    # --- records and admission -----------------------------------------------------------
    def write(self, record: Record) -> None:
        with self._redis.pipeline() as pipe:
            self._queue_write(pipe, record)
            pipe.execute()

    def _queue_write(self, pipe: redis.client.Pipeline, record: Record) -> None:
        """A record and its marks, as one MULTI: live until final, then in the ended index."""
        session_id = record.session_id
        pipe.set(self._key("rec", session_id), json.dumps(asdict(record)))
        live = [self._key("live")]
        if record.key is not None:
            live.append(self._key("live", record.key))
        if record.final:
            pipe.zadd(self._key("ended"), {session_id: self._clock()})
            for name in live:
                pipe.srem(name, session_id)
            return
        for name in live:
            pipe.sadd(name, session_id)
        if record.key is not None:
            pipe.sadd(self._key("keys"), record.key)

    def admit(self, record: Record, limit: int, key_limit: int | None = None) -> Admission:
        """Write a new session's record if fewer than limit sessions are live, and fewer than
        key_limit of its key's, else refuse: counted and written by one script, which Redis runs
        with nothing else between, whichever replica asks."""
        key = record.key or ""
        counted = key_limit if key_limit is not None and record.key is not None else ""
        key_live = self._key("live", key) if key else ""  # never read without a key
        answer = self._admit(
            keys=[self._key("live"), key_live, self._key("rec", record.session_id), self._key("keys")],
            args=[limit, counted, json.dumps(asdict(record)), record.session_id, key],
        )
        return _ADMISSIONS[int(answer)]

    def live_count(self) -> int:
        return int(self._redis.scard(self._key("live")))

    def key_count(self, key: str) -> int:
        return int(self._redis.scard(self._key("live", key)))

    def read(self, session_id: str) -> Record | None:
        return _record(self._redis.get(self._key("rec", session_id)))

    # --- what a session carries besides its record ---------------------------------------
    def write_code(self, session_id: str, code: bytes) -> None:
        self._redis.set(self._key("code", session_id), code)

    def read_code(self, session_id: str) -> bytes | None:
        return self._redis.get(self._key("code", session_id))

    def forget_code(self, session_id: str) -> None:
        self._redis.delete(self._key("code", session_id))

    def watch_secret(self, session_id: str, make: bool = False) -> bytes | None:
        """The secret of the session's watch links (see watch_tokens), made first if asked: NX,
        so replicas making it at once agree on one."""
        if make:
            self._redis.set(self._key("watch", session_id), secrets.token_bytes(32), nx=True)
        return self._redis.get(self._key("watch", session_id))

    def revoke_watch(self, session_id: str) -> None:
        self._redis.delete(self._key("watch", session_id))

    def write_result(self, run_id: str, result: dict) -> None:
        if "result" in result:
            result = {"result": dump_result(result["result"])}
        self._redis.set(self._key("result", run_id), json.dumps(result))

    def read_result(self, run_id: str) -> dict | None:
        raw = self._redis.get(self._key("result", run_id))
        try:
            data = json.loads(raw) if raw is not None else None
        except ValueError:
            return None
        if data is None:
            return None
        if "result" in data:
            return {"result": load_result(data["result"])}
        return {"error": tuple(data["error"])}

    def write_request(self, run_id: str, request: RunRequest) -> None:
        self._redis.set(self._key("request", run_id), json.dumps(dump_request(request)))

    def read_request(self, run_id: str) -> RunRequest | None:
        raw = self._redis.get(self._key("request", run_id))
        try:
            return load_request(json.loads(raw)) if raw is not None else None
        except (ValueError, KeyError, TypeError):
            return None

    def forget(self, session_id: str) -> None:
        """A session that never came to be: no record, no program, no live marks."""
        record = self.read(session_id)
        with self._redis.pipeline() as pipe:
            pipe.delete(*(self._key(kind, session_id) for kind in _KINDS))
            pipe.srem(self._key("live"), session_id)
            if record is not None and record.key is not None:
                pipe.srem(self._key("live", record.key), session_id)
            pipe.execute()

    # --- the end of a session ------------------------------------------------------------
    def finish(
        self,
        session_id: str,
        reason: Reason,
        exit_code: int | None = None,
        started_at: float | None = None,
        ended_at: float | None = None,
        usage: dict | None = None,
        output_bytes: int | None = None,
    ) -> bool:
        """Mark a session ended unless it already is: the first ending is the true one, also
        when two replicas end one session at the same moment (the record is watched: a write
        between its read and ours makes ours fail, and it is read again)."""
        self.forget_code(session_id)
        name = self._key("rec", session_id)
        with self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(name)
                    record = _record(pipe.get(name))
                    if record is None or record.final:
                        pipe.unwatch()
                        return False
                    ended = record.ended(reason, exit_code, started_at, ended_at, usage, output_bytes)
                    pipe.multi()
                    self._queue_write(pipe, ended)
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
        self.on_end(ended)
        return True

    def end(self, session_id: str, reason: Reason, remove: Callable[[], None] | None = None) -> None:
        """The one way a session ends when no run of it is left to tell its client (see
        RecordStore.end, whose order this keeps)."""
        self.request_end(session_id, reason)
        if remove is not None:
            remove()
        self.finish(session_id, reason)

    def request_end(self, session_id: str, reason: Reason) -> None:
        self._redis.set(self._key("end", session_id), str(reason))

    def requested_end(self, session_id: str) -> Reason | None:
        raw = self._redis.get(self._key("end", session_id))
        try:
            return Reason(raw.decode()) if raw is not None else None
        except ValueError:
            return None

    # --- forgetting ----------------------------------------------------------------------
    def prune(self, older_than: float, most: int) -> int:
        """Forget ended sessions past older_than seconds, and the oldest beyond the most kept;
        never a live one. Two small reads when there is nothing to forget."""
        ended = self._key("ended")
        old = self._redis.zrangebyscore(ended, "-inf", f"({self._clock() - older_than}")
        excess = int(self._redis.zcard(ended)) - most
        oldest = self._redis.zrange(ended, 0, excess - 1) if excess > 0 else []
        victims = {raw.decode() for raw in (*old, *oldest)}
        for session_id in victims:
            self._forget_ended(session_id)
        return len(victims)

    def _forget_ended(self, session_id: str) -> None:
        # Live again only if a writer raced an ending; its record stays until it ends for good.
        if not self._redis.sismember(self._key("live"), session_id):
            self._redis.delete(*(self._key(kind, session_id) for kind in _KINDS))
        self._redis.zrem(self._key("ended"), session_id)

    def sweep(self, older_than: float) -> None:
        """Live marks whose record is gone or ended (a session forgotten while a writer raced
        it): every other write is one MULTI, so nothing else can be left half done."""
        sets = [self._key("live")]
        sets += [self._key("live", raw.decode()) for raw in self._redis.smembers(self._key("keys"))]
        for name in sets:
            for raw in self._redis.smembers(name):
                record = self.read(raw.decode())
                if record is None or record.final:
                    self._redis.srem(name, raw)

    # --- the replicas ---------------------------------------------------------------------
    def members(self) -> RedisMembers:
        """The warm pool's members, in Redis: one pool for every replica (see redis_members)."""
        return RedisMembers(self._redis, self._prefix)

    def owners(self, owner: str, host: str, secret: str) -> RedisOwners:
        return RedisOwners(self._redis, self._prefix, host, secret)

    def announce(self) -> None:
        self._redis.set(self._key("worker", f"{socket.gethostname()}:{os.getpid()}"), 1, ex=ALIVE_FOR)

    def others_alive(self) -> bool:
        """A worker of another server that said it is alive within ALIVE_FOR seconds; on this
        host, one whose process is alive (a server killed with -9 a moment ago is not)."""
        host = socket.gethostname()
        prefix = self._key("worker", "")
        for raw in self._redis.scan_iter(prefix + "*"):
            worker_host, _, pid = raw.decode().removeprefix(prefix).rpartition(":")
            if worker_host != host or _process_alive(int(pid)):
                return True
        return False


def _process_alive(pid: int) -> bool:
    """A process of this host that runs, not a zombie: a worker killed with its master is
    reparented to PID 1, which in a container may never reap it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and pid != os.getpid()


def _record(raw: bytes | None) -> Record | None:
    if raw is None:
        return None
    try:
        return Record(**json.loads(raw))
    except (ValueError, TypeError):
        return None
