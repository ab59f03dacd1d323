"""API keys: who may use the server, with which scopes and limits, kept where every worker reads them.

A key's secret is shown once, when it is made, and stored only as a keyed hash (HMAC-SHA256
under a server secret in the instance's state directory): 256 random bits need no slow or salted
hash, and a keys file that leaks (a backup, a configuration repository) is useless without the
secret beside the state. The CLI writes the keys file (whole, then renamed over the old one,
under a lock); every worker re-reads it when it changes, looking at most every half second, so a
revoke holds on every worker within a second.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from .config import Config
from .locks import exclusive
from .statedir import FILE_MODE, instance_directory, private_directory, touch

log = logging.getLogger(__name__)

SECRET_PREFIX = "se_"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# How often a worker looks at the keys file, and how long a file must stand unchanged before
# its timestamps are trusted to show the next change (they are a clock tick coarse).
CHECK_INTERVAL = 0.5
SETTLED_NS = 1_000_000_000
# A key's "last used" is a file's mtime, touched at most this often per key by each worker.
USE_INTERVAL = 60.0


class Scope(enum.StrEnum):
    SESSION = "session"  # interactive sessions: POST/GET/DELETE /session, Piston's connect
    RUN = "run"  # batch runs: POST/GET /run, Piston's execute, Judge0
    ADMIN = "admin"  # the server's own state: /pool, /metrics


DEFAULT_SCOPES = frozenset({Scope.SESSION, Scope.RUN})


class KeysError(ValueError):
    """A key that cannot be made or found, or a keys file that cannot be read, in words for the
    operator."""


@dataclass(frozen=True)
class Key:
    name: str
    scopes: frozenset[Scope]
    # Its sessions and runs live at once (None: only the server's --max-sessions).
    max_sessions: int | None = None
    # Its requests in any 60 s (None: no limit).
    rate: int | None = None
    created_at: float = 0.0
    # Only in listings (KeyStore.list): when a worker last took a request of it.
    last_used: float | None = None

    def public(self) -> dict:
        return {
            "name": self.name,
            "scopes": sorted(self.scopes),
            "maxSessions": self.max_sessions,
            "rate": self.rate,
            "createdAt": self.created_at,
            "lastUsed": self.last_used,
        }


def parse_scopes(text: str | Iterable[str]) -> frozenset[Scope]:
    words = [w.strip() for w in text.split(",")] if isinstance(text, str) else list(text)
    try:
        scopes = frozenset(Scope(word) for word in words if word)
    except ValueError:
        known = ", ".join(Scope)
        raise KeysError(f"scopes {','.join(words)!r}: choose among {known}") from None
    if not scopes:
        raise KeysError("a key needs at least one scope")
    return scopes


class KeyStore:
    """The keys of one server instance: made, listed and revoked by the CLI, found by the workers."""

    def __init__(
        self,
        directory: str,
        keys_file: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        shared_secret: Callable[[], bytes] | None = None,
    ) -> None:
        # The instance's keys directory: the secret, each key's last use; the keys file by default.
        self.directory = directory
        self.path = keys_file or os.path.join(directory, "keys.json")
        self._used_directory = os.path.join(directory, "used")
        # Each key's requests of the last minute (see rates), which a revoke forgets.
        self.rates_directory = os.path.join(directory, "rates")
        private_directory(directory)
        private_directory(self._used_directory)
        self._clock = clock
        self._lock = threading.Lock()
        self._secret: bytes | None = None
        # Where replicas keep the one secret they all hash with (see redis_keys); asked on first use.
        self._shared_secret = shared_secret
        # What the last read found: (digest, key) pairs, the file's signature, when to look again.
        self._keys: list[tuple[bytes, Key]] = []
        self._seen: tuple | None = None
        self._next_check = float("-inf")
        self._broken = False
        self._touched: dict[str, float] = {}

    @classmethod
    def for_config(cls, config: Config) -> KeyStore:
        directory = keys_directory(instance_directory(config.state_dir, config.instance))
        if not config.redis_url:
            return cls(directory, config.keys_file or None)

        def shared_secret() -> bytes:
            # Imported on first use: gunicorn's master reads the keys before it forks, and must not
            # load redis-py (and with it ssl) before gevent patches the workers.
            from .redis_keys import key_secret

            return key_secret(config.redis_url, config.instance)

        return cls(directory, config.keys_file or None, shared_secret=shared_secret)

    # --- the workers' side -------------------------------------------------------------
    def find(self, secret: str) -> Key | None:
        """The key whose secret this is, or None. Every stored digest is compared, in constant time."""
        digest = self._digest(secret) if secret.startswith(SECRET_PREFIX) else None
        found = None
        for stored, key in self._current():
            if digest is not None and hmac.compare_digest(stored, digest):
                found = key
        return found

    def required(self) -> bool:
        """Whether any key exists (or the keys file cannot be read: then no request passes)."""
        keys = self._current()
        return bool(keys) or self._broken

    def used(self, key: Key) -> None:
        """Note a request of key's, as the mtime of a file: at most once a minute per worker."""
        now = self._clock()
        if now - self._touched.get(key.name, float("-inf")) < USE_INTERVAL:
            return
        self._touched[key.name] = now
        path = os.path.join(self._used_directory, key.name)
        try:
            touch(path)
            os.utime(path)
        except OSError as exc:
            log.warning("could not note the use of key %s: %s", key.name, exc)

    def reload(self) -> None:
        """Read the file again at the next look, however recent the last."""
        with self._lock:
            self._next_check = float("-inf")
            self._seen = None

    def _current(self) -> list[tuple[bytes, Key]]:
        with self._lock:
            now = self._clock()
            if now < self._next_check:
                return self._keys
            self._next_check = now + CHECK_INTERVAL
            signature = _signature(self.path)
            if signature is not None and signature == self._seen:
                return self._keys
            try:
                self._keys = [(bytes.fromhex(entry["hash"]), _key(entry)) for entry in self._entries()]
                self._broken = False
            except (OSError, ValueError, KeyError, TypeError) as exc:
                # Never open up because of a bad file: every key is refused until it is mended.
                if not self._broken:
                    log.error("keys file %s unreadable (%s): every request is refused", self.path, exc)
                self._keys, self._broken = [], True
            # A file changed in the last tick may change again without its signature showing it.
            settled = signature is not None and time.time_ns() - signature[2] > SETTLED_NS
            self._seen = signature if settled else None
            return self._keys

    # --- the operator's side (the CLI) ---------------------------------------------------
    def create(
        self,
        name: str,
        scopes: frozenset[Scope] = DEFAULT_SCOPES,
        max_sessions: int | None = None,
        rate: int | None = None,
    ) -> str:
        """Make a key; its secret, which nothing keeps."""
        if not NAME.fullmatch(name):
            raise KeysError(
                f"key name {name!r}: up to 64 letters, digits, '.', '_' or '-', from a letter or digit"
            )
        for what, value in (("max-sessions", max_sessions), ("rate", rate)):
            if value is not None and value <= 0:
                raise KeysError(f"--{what} must be a positive number")
        secret = SECRET_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        entry = {
            "name": name,
            "hash": self._digest(secret).hex(),
            "scopes": sorted(scopes),
            "max_sessions": max_sessions,
            "rate": rate,
            "created_at": time.time(),
        }
        with self._editing() as entries:
            if any(e["name"] == name for e in entries):
                raise KeysError(f"a key named {name!r} exists; revoke it first, or choose another name")
            entries.append(entry)
        return secret

    def revoke(self, name: str) -> None:
        with self._editing() as entries:
            kept = [e for e in entries if e["name"] != name]
            if len(kept) == len(entries):
                raise KeysError(f"no key named {name!r}")
            entries[:] = kept
        # A key made again under this name starts afresh.
        for directory in (self._used_directory, self.rates_directory):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, name))

    def list(self) -> list[Key]:
        """Every key, without its secret or hash, with when it was last used."""
        listed = []
        for entry in self._entries():
            key = _key(entry)
            try:
                used = os.stat(os.path.join(self._used_directory, key.name)).st_mtime
            except FileNotFoundError:
                used = None
            listed.append(replace(key, last_used=used))
        return listed

    @contextlib.contextmanager
    def _editing(self):
        """The entries to change in place; written whole and renamed over the file, under its lock."""
        with exclusive(self.path + ".lock"):
            entries = self._entries()
            yield entries
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(self.path)), prefix=".keys-")
            try:
                os.fchmod(fd, FILE_MODE)
                with os.fdopen(fd, "w") as f:
                    json.dump({"keys": entries}, f, indent=1)
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise

    def _entries(self) -> list[dict]:
        try:
            with open(self.path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return []
        entries = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise KeysError(f"{self.path} is not a keys file: it holds no list of keys")
        return entries

    # --- hashing ---------------------------------------------------------------------------
    def _digest(self, secret: str) -> bytes:
        return hmac.new(self._server_secret(), secret.encode("utf-8", "replace"), hashlib.sha256).digest()

    def _server_secret(self) -> bytes:
        """The instance's secret for the keyed hash: made on first use, 0600, and never changed
        (a new one would turn every key away)."""
        if self._secret is None and self._shared_secret is not None:
            self._secret = self._shared_secret()
        if self._secret is None:
            path = os.path.join(self.directory, "secret")
            try:
                with open(path, "rb") as f:
                    self._secret = f.read()
            except FileNotFoundError:
                self._secret = _make_secret(path)
            if len(self._secret) < 32:
                raise ValueError(f"the server secret {path} is too short: remove it and make every key anew")
        return self._secret


def keys_directory(instance_dir: str) -> str:
    return os.path.join(instance_dir, "keys")


def _make_secret(path: str) -> bytes:
    """Write 32 random bytes to path unless another process got there first; the one that holds."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".secret-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
        # link, unlike rename, never replaces: of two makers at once, one secret wins.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    with open(path, "rb") as f:
        return f.read()


def _key(entry: dict) -> Key:
    return Key(
        name=str(entry["name"]),
        scopes=parse_scopes(entry["scopes"]),
        max_sessions=_positive(entry.get("max_sessions")),
        rate=_positive(entry.get("rate")),
        created_at=float(entry.get("created_at") or 0.0),
    )


def _positive(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"a limit of {value!r}")
    return value


def _signature(path: str) -> tuple | None:
    """What changes whenever the file is replaced or written: None when it is missing."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
