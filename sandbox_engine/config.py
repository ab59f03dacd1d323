"""Configuration: every limit has a command-line flag and a SANDBOX_ENGINE_<NAME> variable."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .languages import LANGUAGES
from .logs import FORMATS as LOG_FORMATS

ENV_PREFIX = "SANDBOX_ENGINE_"
# The images' own user and group (images/runtime/): sandboxes run as uids of the uid range instead,
# so no sandbox shares its per-user quotas with anything that runs the images as they are; the
# group is the compile stage's (executor.COMPILE_GID), which no program may have.
IMAGE_ID = 10001
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
# A name Docker may know a runtime by (daemon.json's "runtimes").
_RUNTIME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
AUTH_MODES = ("auto", "required")
EXECUTORS = ("docker", "kubernetes")
# The settings given in bytes, which take 256m, 64k and the like.
SIZES = ("memory", "disk", "output_limit", "max_code_size", "input_limit", "compile_memory", "replay_buffer")


def parse_size(text: str | int) -> int:
    """'256m' -> 268435456; a plain number is bytes."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (try 256m, 64k or a number of bytes)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


@dataclass(frozen=True)
class Config:
    """One server's settings. Built from flags and the environment, handed to create_app."""

    idle_timeout: float = 30.0
    # For a program waiting at a prompt with a client attached, instead of the idle timeout.
    input_timeout: float = 300.0
    run_timeout: float = 300.0
    output_limit: int = 1048576
    memory: int = parse_size("256m")
    cpus: float = 0.5
    pids: int = 32
    disk: int = parse_size("64m")
    max_sessions: int = 64
    max_code_size: int = 262144
    # Input waiting for a program that does not read it; past this the client is closed (1013).
    input_limit: int = parse_size("2m")
    # The compile stage's own limits, generous enough for rustc, ghc and javac on 2 cores. Its CPU:
    # two, as a plain `docker run` of the compiler has (go and javac use more than one; CFS still
    # shares the cores between sandboxes that want them), or the host's, if fewer (Docker refuses
    # more CPUs than the host has).
    compile_timeout: float = 90.0
    compile_memory: int = parse_size("1g")
    compile_cpus: float = field(default_factory=lambda: float(min(2, os.cpu_count() or 1)))
    compile_pids: int = 128
    # Warm sandboxes kept started per language: "2" for every language, or "python=4,c=1";
    # "python/tty=2" for terminal sessions. Empty or 0 disables the pool.
    pool_size: str = ""
    # Containers carry this name in a label; a server reaps only its own instance's leftovers.
    instance: str = "default"
    # Where finished sessions' records live so that any worker can answer GET /session/<id>.
    state_dir: str = "/var/tmp/sandbox-engine"
    # Redis (redis://host:port/db) for what replicas share: records, admission, waiting code (see
    # store). Empty: the state directory holds them, for one machine's workers.
    redis_url: str = ""
    # With redis_url: the address this replica's workers listen on for resumes relayed from other
    # replicas, as the others reach it (a pod's IP), and the secret those relays carry (empty: one
    # kept in Redis).
    relay_host: str = "127.0.0.1"
    relay_secret: str = ""
    # How long a finished session's record is kept for GET /session/<id>, and how many are kept:
    # past either, the oldest are forgotten first.
    record_ttl: float = 3600.0
    max_records: int = 10000
    docker_host: str | None = None
    # Host uids for sandboxes, FIRST-LAST, one per live sandbox (see uids): a range nobody else on
    # the host uses (keep it clear of /etc/subuid), holding max_sessions plus the warm pool.
    uid_range: str = "200000-265535"
    # Where the uid leases live: one directory for every engine on the host, whatever its instance.
    uid_dir: str = "/var/lib/sandbox-engine/uids"
    # Docker's OCI runtime for the sandboxes: runc (Docker's default) or runsc (gVisor: a kernel
    # of its own in user space between the program and the host's).
    runtime: str = "runc"
    # Where sandboxes run: docker (the daemon at docker_host), or kubernetes (a pod each, in
    # `namespace`, through the API server of `kubeconfig`, KUBECONFIG, or the pod's own account).
    executor: str = "docker"
    namespace: str = "default"
    kubeconfig: str = ""
    # The RuntimeClass of sandbox pods (gVisor's, e.g. "gvisor"); empty for the cluster's default.
    runtime_class: str = ""
    # The registry the cluster's nodes pull sandbox images from, put before each image's name
    # (registry.example.com/team: registry.example.com/team/sandbox-engine/python:latest).
    registry: str = ""
    # Browser origins allowed to open a WebSocket; empty allows same-origin and non-browser clients.
    allowed_origins: tuple[str, ...] = field(default_factory=tuple)
    # How long a session's program runs on after its client went away without closing (or
    # detached), for the client to resume; 0 ends it at once, as a normal close always does.
    reconnect_grace: float = 60.0
    # The recent messages a session keeps for a resuming client, in bytes of JSON; never more
    # than the output limit (see replay_limit).
    replay_buffer: int = 1048576
    # Read-only watchers one session may have at once.
    max_watchers: int = 16
    # The API keys (see keys): empty for keys.json in the instance's state directory.
    keys_file: str = ""
    # "auto": a key is needed once any exists; "required": always, even before the first.
    auth: str = "auto"
    # The log's lines: json, text, or auto (text at a terminal, else JSON; see logs).
    log_format: str = "auto"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Config:
        """Defaults, overridden by SANDBOX_ENGINE_* variables, overridden by keyword arguments."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _convert(f.name, raw)
        for name, value in overrides.items():
            if value is not None:
                values[name] = _convert(name, value) if isinstance(value, str) else value
        if "docker_host" not in values and environ.get("DOCKER_HOST"):
            values["docker_host"] = environ["DOCKER_HOST"]
        config = cls(**values)  # type: ignore[arg-type]
        config.validate()
        return config

    def validate(self) -> None:
        positive = (
            "idle_timeout",
            "input_timeout",
            "run_timeout",
            "output_limit",
            "memory",
            "cpus",
            "pids",
            "disk",
            "max_sessions",
            "max_code_size",
            "input_limit",
            "compile_timeout",
            "compile_memory",
            "compile_cpus",
            "compile_pids",
            "record_ttl",
            "max_records",
            "replay_buffer",
        )
        for name in positive:
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value}")
        if not math.isfinite(self.reconnect_grace) or self.reconnect_grace < 0:
            raise ValueError(f"reconnect_grace must be 0 or more seconds, got {self.reconnect_grace}")
        if self.max_watchers < 0:
            raise ValueError(f"max_watchers must be 0 or more, got {self.max_watchers}")
        if self.auth not in AUTH_MODES:
            raise ValueError(f"auth {self.auth!r}: one of {', '.join(AUTH_MODES)}")
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"log_format {self.log_format!r}: one of {', '.join(LOG_FORMATS)}")
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor {self.executor!r}: one of {', '.join(EXECUTORS)}")
        if not _RUNTIME.match(self.runtime):
            raise ValueError(f"runtime {self.runtime!r}: the name of a Docker runtime, such as runc or runsc")
        uids = self.uids
        if IMAGE_ID in uids:
            raise ValueError(
                f"uid_range {self.uid_range} holds {IMAGE_ID}, the images' own user and the compile group"
            )
        needed = self.max_sessions + sum(self.pool_sizes(list(LANGUAGES)).values())
        if len(uids) < needed:
            raise ValueError(
                f"uid_range {self.uid_range} holds {len(uids)} uids; max_sessions and the pool need {needed}"
            )

    @property
    def sandbox_deadline(self) -> int:
        """Seconds a sandbox may live at most, whoever forgot it (Kubernetes' activeDeadlineSeconds):
        every stage's timeout, the grace to resume, and a minute to spare."""
        stages = self.idle_timeout + self.compile_timeout + self.run_timeout + self.reconnect_grace
        return int(stages) + 60

    @property
    def replay_limit(self) -> int:
        """The replay buffer's bound: --replay-buffer, never above --output-limit."""
        return min(self.replay_buffer, self.output_limit)

    @property
    def uids(self) -> range:
        """The uid range, as numbers; ValueError when it is not FIRST-LAST of valid uids."""
        first, sep, last = self.uid_range.partition("-")
        if not (sep and first.strip().isdigit() and last.strip().isdigit()):
            raise ValueError(f"uid_range {self.uid_range!r}: write FIRST-LAST, e.g. 200000-265535")
        first_uid, last_uid = int(first), int(last)
        # 0 is root; 4294967295 is (uid_t)-1, which no process can have.
        if not 0 < first_uid <= last_uid < 2**32 - 1:
            raise ValueError(
                f"uid_range {self.uid_range!r}: uids from 1 to 4294967294, the first not above the last"
            )
        return range(first_uid, last_uid + 1)

    def pool_sizes(self, languages: list[str]) -> dict[tuple[str, bool], int]:
        """(language, tty) -> how many warm sandboxes to keep; only those above zero."""
        text = self.pool_size.strip()
        if not text:
            return {}
        if text.isdigit():
            return {(language, False): int(text) for language in languages if int(text) > 0}
        sizes: dict[tuple[str, bool], int] = {}
        for item in text.split(","):
            key, sep, count = item.strip().partition("=")
            language, _, mode = key.strip().partition("/")
            if not sep or not count.strip().isdigit() or mode not in ("", "tty") or language not in languages:
                raise ValueError(f"pool size {item.strip()!r}: write LANGUAGE=N or LANGUAGE/tty=N")
            if int(count) > 0:
                sizes[(language, mode == "tty")] = int(count)
        return sizes

    def to_env(self) -> dict[str, str]:
        """The variables that reproduce this config in another process (gunicorn's workers)."""
        env = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, tuple):
                value = ",".join(value)
            env[ENV_PREFIX + f.name.upper()] = str(value)
        return env


def _convert(name: str, raw: str) -> object:
    kind = {f.name: f.type for f in dataclasses.fields(Config)}[name]
    if name in SIZES:
        return parse_size(raw)
    if kind == "float":
        return float(raw)
    if kind == "int":
        return int(raw)
    if name == "allowed_origins":
        return tuple(o.strip() for o in raw.split(",") if o.strip())
    return raw
