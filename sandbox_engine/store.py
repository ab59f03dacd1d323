"""Where a server keeps what every worker must know of its sessions: the state directory
(records.RecordStore, one machine's workers) or Redis (redis_records.RedisRecordStore, any number
of replicas). Chosen in one place, open_store, from --redis-url.

Either way a store holds each session's record, the live counts admission checks, the program
waiting for its attach, word of an end, and a batch run's request and result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .batch import RunRequest
from .config import Config
from .pool_members import Members
from .records import Admission, Record
from .relay import Owners
from .states import Reason


class Store(Protocol):
    # This replica's own state directory (its workers' locks and sockets), whatever the store.
    directory: str
    # Told of each session's end once, by the store that recorded it (metrics, the log).
    on_end: Callable[[Record], None]

    def write(self, record: Record) -> None: ...

    def admit(self, record: Record, limit: int, key_limit: int | None = None) -> Admission:
        """Write a new session's record if fewer than `limit` sessions are live and fewer than
        `key_limit` of its key's, atomically across every worker and replica."""

    def live_count(self) -> int: ...

    def key_count(self, key: str) -> int: ...

    def read(self, session_id: str) -> Record | None: ...

    def write_code(self, session_id: str, code: bytes) -> None: ...

    def read_code(self, session_id: str) -> bytes | None: ...

    def forget_code(self, session_id: str) -> None: ...

    def watch_secret(self, session_id: str, make: bool = False) -> bytes | None: ...

    def revoke_watch(self, session_id: str) -> None: ...

    def write_result(self, run_id: str, result: dict) -> None: ...

    def read_result(self, run_id: str) -> dict | None: ...

    def write_request(self, run_id: str, request: RunRequest) -> None: ...

    def read_request(self, run_id: str) -> RunRequest | None: ...

    def forget(self, session_id: str) -> None: ...

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
        """Mark a session ended unless it already is; whether this ending was the first."""

    def end(self, session_id: str, reason: Reason, remove: Callable[[], None] | None = None) -> None: ...

    def request_end(self, session_id: str, reason: Reason) -> None: ...

    def requested_end(self, session_id: str) -> Reason | None: ...

    def prune(self, older_than: float, most: int) -> int: ...

    def sweep(self, older_than: float) -> None: ...

    def members(self) -> Members:
        """The warm pool's members, shared as the records are."""

    def owners(self, owner: str, host: str, secret: str) -> Owners:
        """How this worker (named `owner`) lets the others reach the sessions it runs (see relay):
        listening on `host` with the shared `secret` where a network lies between them."""

    def announce(self) -> None:
        """Say this worker is alive, for a few seconds (every reaper pass says it again)."""

    def others_alive(self) -> bool:
        """Whether a worker of another server shares these records: then a server starting or
        stopping must not reap the whole instance, whose sandboxes that server may be running."""


def open_store(config: Config) -> Store:
    """The store --redis-url asks for: Redis when given, else the instance's state directory.
    Each replica keeps a state directory of its own either way (see Store.directory)."""
    from .records import RecordStore
    from .statedir import instance_directory

    directory = instance_directory(config.state_dir, config.instance)
    if not config.redis_url:
        return RecordStore(directory)
    # Imported here: a server without --redis-url never loads redis-py.
    from .redis_records import RedisRecordStore

    return RedisRecordStore(config.redis_url, config.instance, directory)


def relay_owners(store: Store, owner: str, config: Config) -> Owners:
    """The worker's relay addressing, as the store shares it (see Store.owners)."""
    return store.owners(owner, config.relay_host, config.relay_secret)
