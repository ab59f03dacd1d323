"""Session records: what GET /session/<id> reports, readable by every worker of the server.

The live truth of a session is its container (claimed or not, running or not); a record is the
story told about it, written at each transition by whoever made it, and kept after the container
is gone so a client can still learn how its session ended.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

from .batch import RunRequest, dump_request, dump_result, load_request, load_result
from .executor import SandboxRef
from .locks import exclusive
from .pool_members import FileMembers
from .relay import LocalOwners
from .statedir import private_directory, private_opener, touch
from .states import Reason, State, signal_name

# A session's files: its record, its program until it starts, word of its end, a run's result.
_SUFFIXES = (".json", ".code", ".end", ".result", ".request", ".watch")
# How long the ended index must stand unchanged before prune trusts its mtime to show a change.
SETTLED_NS = 1_000_000_000


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Record:
    session_id: str
    language: str
    state: State
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    reason: Reason | None = None
    # A tty session's terminal size; None for pipes.
    cols: int | None = None
    rows: int | None = None
    # One pipe for the program's stdout and stderr, so that their order holds.
    merge_stderr: bool = False
    # The sandbox as its executor made it (see Executor.create), for the worker that attaches.
    sandbox: SandboxRef | None = None
    # What the program used (Usage.public()), once it ended by itself.
    usage: dict | None = None
    # A batch run's (see runs), not a session a client attaches to.
    batch: bool = False
    # The name of the API key that made it, which alone may see or end it (None: no key).
    key: str | None = None
    # Bytes of stdout and stderr its client was sent, once it ended (None: not known).
    output_bytes: int | None = None

    def __post_init__(self) -> None:
        # As read back from JSON: words and a dict, made our types again.
        object.__setattr__(self, "state", State(self.state))
        if self.reason is not None:
            object.__setattr__(self, "reason", Reason(self.reason))
        if isinstance(self.sandbox, dict):
            object.__setattr__(self, "sandbox", SandboxRef(**self.sandbox))

    @property
    def final(self) -> bool:
        return self.state.final

    def public(self) -> dict:
        return {
            "sessionId": self.session_id,
            "language": self.language,
            "state": self.state,
            "exitCode": self.exit_code,
            "reason": self.reason,
            "signal": signal_name(self.exit_code) if self.final else None,
            "createdAt": iso(self.created_at),
            "startedAt": iso(self.started_at),
            "endedAt": iso(self.ended_at),
            "usage": self.usage,
        }

    def ended(
        self,
        reason: Reason,
        exit_code: int | None = None,
        started_at: float | None = None,
        ended_at: float | None = None,
        usage: dict | None = None,
        output_bytes: int | None = None,
    ) -> Record:
        return replace(
            self,
            state=reason.state,
            reason=reason,
            exit_code=exit_code,
            started_at=started_at or self.started_at,
            ended_at=ended_at or time.time(),
            usage=usage,
            output_bytes=output_bytes,
        )

    def log_fields(self) -> dict:
        """How it ended, for the log: never its code, input or output."""
        ran = self.ended_at - self.started_at if self.ended_at and self.started_at else None
        return {
            "runId" if self.batch else "sessionId": self.session_id,
            "language": self.language,
            "reason": self.reason,
            "exitCode": self.exit_code,
            "usage": self.usage,
            "outputBytes": self.output_bytes,
            "durationMs": round(ran * 1000, 1) if ran is not None else None,
        }


class Admission(enum.Enum):
    ADMITTED = "admitted"
    # The server's --max-sessions are live.
    AT_CAPACITY = "at_capacity"
    # The key's own limit of live sessions and runs is reached.
    OVER_QUOTA = "over_quota"


class RecordStore:
    """One JSON file per session in a directory the server's workers share.

    The directory and everything in it are private to the server's user (see statedir): a
    session id is a capability, and a waiting program is a user's code.
    """

    def __init__(self, directory: str, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        # Told of each session's end once, by the store that recorded it (metrics, the log).
        self.on_end: Callable[[Record], None] = lambda record: None
        # When sessions end, as the ended index and prune count it.
        self._clock = clock
        # What prune last found in the ended index when it left nothing to forget: the index's
        # mtime then, and its oldest mark.
        self._index_seen: tuple[int, str] | None = None
        # One empty file per session not yet ended: counting them is how capacity is checked,
        # without asking Docker (whose container list contends with every start and rename).
        self.live_directory = os.path.join(directory, ".live")
        # One empty file per ended session, named by when it ended: the oldest sort first, so
        # pruning lists this alone, never the records themselves.
        self.ended_directory = os.path.join(directory, ".ended")
        # The live marks again, one directory per API key, so that admission counts a key's own.
        self.keys_directory = os.path.join(directory, ".live-keys")
        private_directory(directory)
        private_directory(self.live_directory)
        private_directory(self.ended_directory)
        private_directory(self.keys_directory)

    def _path(self, session_id: str, suffix: str = ".json") -> str:
        return os.path.join(self.directory, session_id + suffix)

    def write(self, record: Record) -> None:
        # Write then rename, so a reader in another worker sees the old record or the new one.
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(record), f)
        os.replace(tmp, self._path(record.session_id))
        marks = [os.path.join(self.live_directory, record.session_id)]
        if record.key is not None:
            marks.append(os.path.join(self.keys_directory, record.key, record.session_id))
        if record.final:
            touch(os.path.join(self.ended_directory, f"{_ns(self._clock())}-{record.session_id}"))
            for live in marks:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(live)
            return
        for live in marks:
            if not os.path.exists(live):
                private_directory(os.path.dirname(live))
                touch(live)

    def admit(self, record: Record, limit: int, key_limit: int | None = None) -> Admission:
        """Write a new session's record if fewer than limit sessions are live, and fewer than
        key_limit of its key's, else refuse.

        Counting and marking happen under one lock on the shared directory, so workers admitting
        at the same moment cannot together go past either limit. The lock is held for two
        directory listings and a file write, well under a millisecond, so a gevent worker barely
        notices it.
        """
        with exclusive(os.path.join(self.directory, ".admit.lock")):
            # The key's own limit first: waiting for other clients' sessions to end won't lift it.
            if key_limit is not None and record.key is not None and self.key_count(record.key) >= key_limit:
                return Admission.OVER_QUOTA
            if self.live_count() >= limit:
                return Admission.AT_CAPACITY
            self.write(record)
            return Admission.ADMITTED

    def live_count(self) -> int:
        """How many sessions have not ended, in every worker."""
        return len(os.listdir(self.live_directory))

    def key_count(self, key: str) -> int:
        """How many sessions and runs of an API key have not ended, in every worker."""
        try:
            return len(os.listdir(os.path.join(self.keys_directory, key)))
        except FileNotFoundError:
            return 0

    def read(self, session_id: str) -> Record | None:
        try:
            with open(self._path(session_id)) as f:
                return Record(**json.load(f))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def write_code(self, session_id: str, code: bytes) -> None:
        """The program, kept until a worker hands it to the sandbox."""
        with open(self._path(session_id, ".code"), "wb", opener=private_opener) as f:
            f.write(code)

    def read_code(self, session_id: str) -> bytes | None:
        try:
            with open(self._path(session_id, ".code"), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def watch_secret(self, session_id: str, make: bool = False) -> bytes | None:
        """The secret of the session's watch links (see watch_tokens), made first if asked."""
        return _secret(self._path(session_id, ".watch"), make)

    def revoke_watch(self, session_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(session_id, ".watch"))

    def write_result(self, run_id: str, result: dict) -> None:
        """A batch run's result, or why it has none: {"result": RunResult} or {"error": (code,
        message)}, read back by any worker (see runs)."""
        if "result" in result:
            result = {"result": dump_result(result["result"])}
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            json.dump(result, f)
        os.replace(tmp, self._path(run_id, ".result"))

    def read_result(self, run_id: str) -> dict | None:
        try:
            with open(self._path(run_id, ".result")) as f:
                data = json.load(f)
        except (FileNotFoundError, ValueError):
            return None
        if "result" in data:
            return {"result": load_result(data["result"])}
        return {"error": tuple(data["error"])}

    def write_request(self, run_id: str, request: RunRequest) -> None:
        """A batch run's request, for whoever reads the run back (Judge0 echoes it)."""
        with open(self._path(run_id, ".request"), "w", opener=private_opener) as f:
            json.dump(dump_request(request), f)

    def read_request(self, run_id: str) -> RunRequest | None:
        try:
            with open(self._path(run_id, ".request")) as f:
                return load_request(json.load(f))
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def forget_code(self, session_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(session_id, ".code"))

    def forget(self, session_id: str) -> None:
        """A session that never came to be: no record, no program."""
        record = self.read(session_id)
        keyed = () if record is None or record.key is None else (record.key,)
        for path in (
            *(self._path(session_id, suffix) for suffix in _SUFFIXES),
            os.path.join(self.live_directory, session_id),
            *(os.path.join(self.keys_directory, key, session_id) for key in keyed),
        ):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

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
        when two workers end one session at the same moment. Whether this one was first."""
        self.forget_code(session_id)
        with exclusive(os.path.join(self.directory, ".finish.lock")):
            record = self.read(session_id)
            if record is None or record.final:
                return False
            ended = record.ended(reason, exit_code, started_at, ended_at, usage, output_bytes)
            self.write(ended)
        self.on_end(ended)
        return True

    def end(self, session_id: str, reason: Reason, remove: Callable[[], None] | None = None) -> None:
        """The one way a session ends when no run of it is left to tell its client: delete,
        expiry, the reaper, shutdown and the reaping of what a crash left all come here.

        Word of the reason first, so an attach meanwhile hears the session ended and a removal
        that fails leaves the reason for the reaper; then the sandbox goes; then the record says
        so, which a client may take to mean nothing is left behind. A failed removal raises
        and records nothing.
        """
        self.request_end(session_id, reason)
        if remove is not None:
            remove()
        self.finish(session_id, reason)

    def request_end(self, session_id: str, reason: Reason) -> None:
        """Leave word for the worker running the session that it was ended, and why."""
        with open(self._path(session_id, ".end"), "w", opener=private_opener) as f:
            f.write(reason)

    def requested_end(self, session_id: str) -> Reason | None:
        try:
            with open(self._path(session_id, ".end")) as f:
                return Reason(f.read().strip())
        except (FileNotFoundError, ValueError):
            return None

    def prune(self, older_than: float, most: int) -> int:
        """Forget ended sessions: those that ended over older_than seconds ago, and the oldest
        beyond the most kept. Never a live session. Returns how many were forgotten.

        Cheap enough for every reaper pass: the ended index (about `most` names) is listed only
        when it changed or its oldest mark comes of age, and sorted only when there is something
        to forget.
        """
        cutoff = _ns(self._clock() - older_than)
        # Taken before the listing: a mark added later changes it, and the next pass looks again.
        changed = os.stat(self.ended_directory).st_mtime_ns
        if self._index_seen is not None and self._index_seen[0] == changed and self._index_seen[1] >= cutoff:
            return 0
        marks = os.listdir(self.ended_directory)
        excess = len(marks) - most
        oldest = min(marks, default="~")  # "~" sorts after every time
        if excess <= 0 and oldest >= cutoff:
            # Timestamps are coarse (a clock tick): a mark added in the tick of `changed` would
            # leave it as it is, so only an index unchanged for a while is taken as seen.
            settled = time.time_ns() - changed > SETTLED_NS
            self._index_seen = (changed, oldest) if settled else None
            return 0
        self._index_seen = None
        marks.sort()
        forgotten = 0
        for index, mark in enumerate(marks):
            if index >= excess and mark >= cutoff:
                break
            self._forget_ended(mark)
            forgotten += 1
        return forgotten

    def _forget_ended(self, mark: str) -> None:
        _, _, session_id = mark.partition("-")
        # Live again only if a writer raced an ending; its record stays until it ends for good,
        # which marks it anew.
        if session_id and not os.path.exists(os.path.join(self.live_directory, session_id)):
            for suffix in _SUFFIXES:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path(session_id, suffix))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.ended_directory, mark))

    def sweep(self, older_than: float) -> None:
        """The slow safety net under prune, for a pass now and then: forget session files older
        than older_than seconds that no live session owns (a writer that died between a record
        and its index mark, records of older versions, temporary files of a dead writer), and
        live marks whose record is gone or ended. Lock files are never touched: removing one
        while a worker holds it would let the next taker lock a new file beside it."""
        cutoff = time.time() - older_than  # against the files' own times
        live = set(os.listdir(self.live_directory))
        for entry in os.scandir(self.directory):
            session_id, _, suffix = entry.name.rpartition(".")
            dead_writers = entry.name.startswith(".tmp-")
            ended_session = not entry.name.startswith(".") and "." + suffix in _SUFFIXES
            if not dead_writers and not (ended_session and session_id not in live):
                continue
            with contextlib.suppress(FileNotFoundError):
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
        # A live mark whose record is gone or ended was left by a writer that died in between.
        marks = [self.live_directory]
        marks += [e.path for e in os.scandir(self.keys_directory) if e.is_dir(follow_symlinks=False)]
        for directory in marks:
            for session_id in os.listdir(directory):
                record = self.read(session_id)
                if record is None or record.final:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(directory, session_id))

    def members(self) -> FileMembers:
        """The warm pool's members, in this directory: one server's workers share them."""
        return FileMembers(self.directory)

    def owners(self, owner: str, host: str, secret: str) -> LocalOwners:
        """Unix sockets in this directory, private to the server's user: no host, no secret."""
        return LocalOwners(self.directory, owner)

    def announce(self) -> None:
        """One server's workers share this directory; no other server does (see Store)."""

    def others_alive(self) -> bool:
        return False


def _secret(path: str, make: bool) -> bytes | None:
    if make and not os.path.exists(path):
        # Written aside then linked in: two workers making it at once agree on one secret.
        tmp = os.path.join(os.path.dirname(path), f".tmp-{secrets.token_hex(8)}.watch")
        with open(tmp, "wb", opener=private_opener) as f:
            f.write(secrets.token_bytes(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _ns(ts: float) -> str:
    """A time as the ended index names it: nanoseconds, zero-padded so names sort by time."""
    return f"{max(0, int(ts * 1e9)):020d}"
