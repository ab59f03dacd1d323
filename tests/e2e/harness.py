"""The end-to-end harness: a real `sandbox-engine serve` on the real Docker daemon, and a client."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field

import described
import docker
import kube
import redis
import requests
from redisserver import redis_server
from websockets.sync.client import ClientConnection, connect

from sandbox_engine.config import Config
from sandbox_engine.languages import LANGUAGES

# The core engine issue's interactive example, which several suites run end to end: the IDE's
# Python example (the unit tests pin it to the text).
INTERACTIVE = LANGUAGES["python"].example
# Sleeps until a signal ends it, in Python programs the tests interrupt. Never one long
# time.sleep: CPython runs a signal's handler between bytecodes, and a SIGINT landing after the
# last check before the sleep's system call starts waits for the sleep to end (60 s). On a loaded
# machine that window is wide enough for a client to see the prompt and press Ctrl-C in it.
SLEEP_UNTIL_SIGNAL = "while True:\n        time.sleep(0.05)"
# Every language, in the order GET /languages lists them.
LANGUAGE_IDS = list(LANGUAGES)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.dirname(sys.executable)
INSTANCE_LABEL = "sandbox-engine.instance"
# The host's uid leases, which every server of the suite shares, as engines on one host do.
UID_DIR = Config().uid_dir
# The Docker runtime the servers run their sandboxes on (`make test-gvisor` sets runsc), which
# start_server hands on through the environment; where gVisor differs, the tests say how.
RUNTIME = os.environ.get("SANDBOX_ENGINE_RUNTIME") or "runc"
GVISOR = RUNTIME == "runsc"
# Where the servers run their sandboxes: docker, or kubernetes (`make test-kubernetes`), through
# the test API server (tests/kubeapi), whose pods are containers of the same daemon.
KUBE = (os.environ.get("SANDBOX_ENGINE_EXECUTOR") or "docker") == "kubernetes"
SESSION_LABEL = "sandbox-engine/session"
# How soon every worker of a server sees a change of its API keys.
KEYS_SEEN_WITHIN = 1.0
# Every instance this test run started, for the end-of-suite leak check.
STARTED_INSTANCES: set[str] = set()
# SANDBOX_ENGINE_E2E_REPLICAS=2: every server of the suite is two replicas on two ports, with a
# state directory each and one Redis for the suite (--redis-url); the tests' HTTP requests go to
# the first, their WebSockets to the second (see Server.peer).
REPLICAS = int(os.environ.get("SANDBOX_ENGINE_E2E_REPLICAS") or 1)
# What the replicas share, which `sandbox-engine keys` is given as they are.
SHARED = ("redis_url", "keys_file")
# The suite's one redis-server, started with the first replicated server (see shared_redis).
_REDIS: list = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def instance_containers(client: docker.DockerClient, instance: str) -> list[dict]:
    """The instance's containers as Docker lists them (Id, Names, State, Labels), without inspecting
    each one, which races with their removal."""
    return client.api.containers(all=True, filters={"label": f"{INSTANCE_LABEL}={instance}"})


@dataclass
class Server:
    """One running `sandbox-engine serve`, with its own instance name and state directory."""

    url: str
    instance: str
    process: subprocess.Popen
    docker: docker.DockerClient
    options: dict = field(default_factory=dict)
    # Its state directory (records, API keys) and the file its output goes to.
    state_dir: str = ""
    log: str = ""
    # The second replica, sharing the instance and Redis, which the tests' WebSockets reach.
    peer: Server | None = None

    @property
    def ws_url(self) -> str:
        url = self.peer.url if self.peer is not None else self.url
        return "ws" + url[len("http") :]

    @property
    def processes(self) -> list[subprocess.Popen]:
        """Every replica's `sandbox-engine serve`."""
        return [self.process] + (self.peer.processes if self.peer is not None else [])

    def post(self, code: str, language: str = "python", **extra) -> requests.Response:
        return requests.post(
            f"{self.url}/session", json={"language": language, "code": code, **extra}, timeout=30
        )

    def create(self, code: str, language: str = "python") -> str:
        response = self.post(code, language)
        assert response.status_code == 201, response.text
        return response.json()["sessionId"]

    def session(self, session_id: str) -> dict:
        return requests.get(f"{self.url}/session/{session_id}", timeout=10).json()

    def attach(
        self, session_id: str, resume: int | None = None, takeover: bool = False, base: str = "", **kwargs
    ) -> Attachment:
        """A client of the session's WebSocket; resuming after seq `resume`, taking over if asked,
        through another address (a proxy's) if `base` is given."""
        query = "&".join(
            part
            for part in (f"resume={resume}" if resume is not None else "", "takeover=1" if takeover else "")
            if part
        )
        url = f"{base or self.ws_url}/ws/session/{session_id}" + (f"?{query}" if query else "")
        return Attachment(connect(url, open_timeout=10, **kwargs).__enter__(), resume or 0)

    def share(self, session_id: str) -> dict:
        """A watch link of the session: {"watchToken", "url"}."""
        response = requests.post(f"{self.url}/session/{session_id}/watchers", timeout=10)
        assert response.status_code == 201, response.text
        return response.json()

    def watch(
        self, session_id: str, token: str, start: str = "start", base: str = "", **kwargs
    ) -> Attachment:
        """A read-only watcher of the session, from the start of what is held or from now."""
        url = f"{base or self.ws_url}/ws/session/{session_id}/watch?token={token}&from={start}"
        return Attachment(
            connect(url, open_timeout=10, **kwargs).__enter__(), 0 if start == "start" else None
        )

    def run(
        self, code: str, inputs: list[str] | None = None, timeout: float = 60, language: str = "python"
    ) -> Transcript:
        """Create, attach, send inputs one by one as soon as running, and read to the end."""
        with self.attach(self.create(code, language)) as ws:
            for data in inputs or []:
                ws.send({"type": "input", "data": data})
            return ws.read_to_end(timeout)

    def record(self, session_id: str) -> dict:
        """The session's record in the server's state directory, as its workers read it."""
        with open(os.path.join(self.state_dir, self.instance, f"{session_id}.json")) as f:
            return json.load(f)

    def containers(self) -> list:
        return instance_containers(self.docker, self.instance)

    def sessions_containers(self) -> list[dict]:
        """Every container of a session, leaving out the warm pool's."""
        if KUBE:
            # A pool's pod taken for a session keeps its name; its session label says.
            pods = set(kube.pod_names(self.instance, f"{SESSION_LABEL}!="))
            return [c for c in self.containers() if c["Names"][0].lstrip("/") in pods]
        taken = self.taken()
        return [c for c in self.containers() if "-pool-" not in c["Names"][0] or c["Id"] in taken]

    def session_containers(self, session_id: str) -> list[dict]:
        """The session's container: by its name, `se-<instance>-<session>`, claimed or not, or
        a warm one the session took while it keeps its pool's name (a pod's: the container of
        the pod that carries the session's label)."""
        if KUBE:
            pods = set(kube.pod_names(self.instance, f"{SESSION_LABEL}={session_id}"))
            return [c for c in self.containers() if c["Names"][0].lstrip("/") in pods]
        taken = self.taken(session_id)
        return [
            c
            for c in self.containers()
            if c["Names"][0].lstrip("/").split(".")[0].endswith(session_id) or c["Id"] in taken
        ]

    def taken(self, session_id: str | None = None) -> set[str]:
        """The sandboxes the state store says sessions took (or this session), by container id (a
        pod's name): a warm one, or one made for its session, keeps its pool's name until
        Docker's name follows (see claims), or its removal."""
        return {container for container, session, _ in self.store_entries() if session_id in (None, session)}

    def store_entries(self) -> list[tuple[str, str, str]]:
        """The state store's taken and claimed sandboxes: (container id, session, owner or "").
        In the state directory (`pool/claimed/<container>.<session>.<owner>.json`), or in the
        replicas' Redis (`se:<instance>:pool:taken`: `<session> <time> <owner>@<host>`)."""
        if "redis_url" in self.options:
            client = redis.Redis.from_url(self.options["redis_url"])
            try:
                entries = client.hgetall(f"se:{self.instance}:pool:taken")
            finally:
                client.close()
            found = []
            for container, raw in entries.items():
                session, _, owner = [*raw.decode().split(" "), "", ""][:3]
                found.append((container.decode(), session, owner.partition("@")[0]))
            return found
        found = []
        for kind in ("taken", "claimed"):
            directory = os.path.join(self.state_dir, self.instance, "pool", kind)
            for name in os.listdir(directory) if os.path.isdir(directory) else []:
                container, session, owner, *_ = [*name.split("."), "", ""]
                found.append((container, session, owner if kind == "claimed" else ""))
        return found

    def owner(self, session_id: str) -> str | None:
        """Which worker claimed the session's sandbox (`p<pid>`): its container's name or the
        state store says under Docker, its pod's owner label under Kubernetes; None while
        unclaimed."""
        if KUBE:
            owners = kube.pod_labels(self.instance, f"{SESSION_LABEL}={session_id}", "sandbox-engine/owner")
            return next((owner for owner in owners if owner), None)
        for container in self.session_containers(session_id):
            _, dot, owner = container["Names"][0].partition(".")
            if dot and owner.startswith("p"):
                return owner
        # A claim is the state store's alone until Docker's name follows, a moment after its
        # start (see claims).
        for _, session, owner in self.store_entries():
            if session == session_id and owner.startswith("p"):
                return owner
        return None

    def leases(self) -> dict[int, dict]:
        """The host uids this server's sandboxes hold now, by uid, with what each lease says."""
        leases = {}
        for name in os.listdir(UID_DIR) if os.path.isdir(UID_DIR) else []:
            try:
                with open(os.path.join(UID_DIR, name)) as f:
                    lease = json.load(f)
            except (OSError, ValueError):
                continue  # freed meanwhile, or the directory's lock file
            if lease.get("instance") == self.instance:
                leases[int(name)] = lease
        return leases

    def wait_no_containers(self, timeout: float = 10, pool_too: bool = True) -> list:
        """Wait until no container of the instance is left (or none of a session's)."""
        listing = self.containers if pool_too else self.sessions_containers
        deadline = time.monotonic() + timeout
        while (left := listing()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return left

    def keys(self, *args: str) -> subprocess.CompletedProcess:
        """`sandbox-engine keys ...` as the operator runs it beside the server."""
        given = {name: self.options[name] for name in SHARED if self.options.get(name)}
        shared = [f"--{name.replace('_', '-')}={value}" for name, value in given.items()]
        return subprocess.run(
            [os.path.join(VENV_BIN, "sandbox-engine"), "keys", *args]
            + ["--state-dir", self.state_dir, "--instance", self.instance, *shared],
            capture_output=True,
            text=True,
            timeout=30,
        )

    def make_key(self, name: str, *options: str) -> str:
        """A new API key's secret, once every worker knows it: within a second of the change
        (keys.CHECK_INTERVAL). Not awaited by asking: a request on a worker that knows it already
        would count against the key's rate."""
        done = self.keys("create", name, *options)
        assert done.returncode == 0, done.stderr
        time.sleep(KEYS_SEEN_WITHIN)
        return done.stdout.strip()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Stop every replica, the first last (the last to go reaps what no client attached to,
        see reaper.reap_instance); the first one's exit status."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(sig)
            process.wait(timeout)
        return self.process.returncode


@dataclass
class Transcript:
    messages: list[tuple[float, dict]]

    @property
    def final(self) -> dict:
        return self.messages[-1][1]

    @property
    def ending(self) -> dict:
        """The final state message without its usage figures (which vary from run to run), once
        they are checked: measured for a program that ended by itself, else null."""
        final = dict(self.final)
        usage = final.pop("usage")
        if final["reason"] == "exited":
            assert set(usage) == {"cpuTimeMs", "wallTimeMs", "memoryPeakBytes"}, usage
            assert usage["wallTimeMs"] > 0 and usage["memoryPeakBytes"] > 0, usage
        return final

    def text(self, stream: str = "stdout") -> str:
        return "".join(m["data"] for _, m in self.messages if m["type"] == stream)


class Attachment:
    """A WebSocket client speaking the protocol, with arrival times for every message."""

    def __init__(self, ws: ClientConnection, after: int | None = 0) -> None:
        self.ws = ws
        self.t0 = time.monotonic()
        self.messages: list[tuple[float, dict]] = []
        # Every session message carries the next seq (checked here, for every test), kept apart
        # so that tests compare messages as they compare them without it; a gap says what it skips.
        self.seqs: list[int] = []
        # None: a watcher from now, whose first seq is whatever the session is at.
        self.last_seq = after
        self.gaps: list[dict] = []

    def __enter__(self) -> Attachment:
        return self

    def __exit__(self, *exc) -> None:
        self.ws.close()

    def send(self, message: dict) -> None:
        self.ws.send(json.dumps(message))

    def recv(self, timeout: float = 30) -> dict:
        message = json.loads(self.ws.recv(timeout))
        # As it came, seq and all: the document's schema of the server's messages.
        described.check_message("SessionServerMessage", message)
        if message["type"] == "gap":
            assert message["from"] == self.last_seq + 1, (message, self.last_seq)
            self.last_seq = message["to"]
            self.gaps.append(message)
        elif "seq" in message:
            seq = message.pop("seq")
            if self.last_seq is None:
                self.last_seq = seq - 1
            assert seq == self.last_seq + 1, (seq, self.last_seq)
            self.last_seq = seq
            self.seqs.append(seq)
        self.messages.append((time.monotonic() - self.t0, message))
        return message

    def read_until(self, predicate, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv(max(0.01, deadline - time.monotonic()))
            if predicate(message):
                return message

    def read_stdout_until(self, text: str, timeout: float = 30) -> str:
        """Read until the stdout seen so far contains text; returns all stdout so far."""
        deadline = time.monotonic() + timeout
        while text not in (seen := Transcript(self.messages).text()):
            self.recv(max(0.01, deadline - time.monotonic()))
        return seen

    def read_to_end(self, timeout: float = 60) -> Transcript:
        self.read_until(lambda m: m["type"] == "state" and m["state"] in ("FINISHED", "TERMINATED"), timeout)
        return Transcript(self.messages)


def start_server(
    docker_client,
    tmp_path_factory,
    workers: int = 2,
    instance: str | None = None,
    ready: bool = True,
    state_dir: str | None = None,
    **options,
) -> Server:
    """A real `sandbox-engine serve`, once it is ready (or, with ready=False, once it answers);
    under SANDBOX_ENGINE_E2E_REPLICAS=2, two of them sharing the instance and one Redis."""
    instance = instance or f"t{uuid.uuid4().hex[:10]}"
    STARTED_INSTANCES.add(instance)
    state_dir = state_dir or str(tmp_path_factory.mktemp("state"))
    if REPLICAS < 2 or "redis_url" in options:
        return _start_one(docker_client, tmp_path_factory, workers, instance, ready, state_dir, **options)
    options["redis_url"] = shared_redis(tmp_path_factory)
    # One keys file for both, as the operator mounts it on every replica (see README, Replicas).
    options.setdefault("keys_file", os.path.join(state_dir, "keys.json"))
    first = _start_one(docker_client, tmp_path_factory, workers, instance, ready, state_dir, **options)
    try:
        own_dir = str(tmp_path_factory.mktemp("state"))
        first.peer = _start_one(docker_client, tmp_path_factory, workers, instance, ready, own_dir, **options)
    except BaseException:
        shutdown(first)
        raise
    return first


def shared_redis(tmp_path_factory) -> str:
    """The suite's redis-server, started on first use; stop_shared_redis stops it."""
    if not _REDIS:
        context = redis_server(str(tmp_path_factory.mktemp("redis")))
        _REDIS.append((context, context.__enter__()))
    return _REDIS[0][1]


def stop_shared_redis() -> None:
    while _REDIS:
        context, _ = _REDIS.pop()
        context.__exit__(None, None, None)


def _start_one(
    docker_client, tmp_path_factory, workers: int, instance: str, ready: bool, state_dir: str, **options
) -> Server:
    port = free_port()
    env = {**os.environ, "SANDBOX_ENGINE_STATE_DIR": state_dir}
    args = [os.path.join(VENV_BIN, "sandbox-engine"), "serve", "--bind", f"127.0.0.1:{port}"]
    args += ["--workers", str(workers), "--instance", instance]
    for name, value in options.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    log = open(tmp_path_factory.mktemp("log") / "server.log", "w")
    process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(
        f"http://127.0.0.1:{port}", instance, process, docker_client, options, state_dir, log.name
    )
    # Generous: on a loaded machine a worker's first /readyz (it lists the images) can take seconds.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; see {log.name}")
        try:
            if (
                requests.get(f"{server.url}/{'readyz' if ready else 'healthz'}", timeout=10).status_code
                == 200
            ):
                # From now on every answer of the server is held against the document it serves.
                described.watch(server.url, requests.get(f"{server.url}/openapi.json", timeout=10).json())
                return server
        except requests.RequestException:
            pass  # not listening yet, or too slow to answer this time
        time.sleep(0.1)
    # Stopped as every other server is, so that its pool does not outlive it.
    shutdown(server)
    raise RuntimeError(f"server did not become ready; see {log.name}")


def shutdown(server: Server) -> None:
    """Stop the server, then fail the test if any container of its instance is left."""
    try:
        server.stop()
    except subprocess.TimeoutExpired:
        for process in server.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    left = server.wait_no_containers(timeout=5)
    for container in left:
        # Cleared for the next tests, then reported. One the server is removing at this moment
        # is gone by the time this removal asks (404): the report below still names it.
        with contextlib.suppress(docker.errors.NotFound):
            server.docker.api.remove_container(container["Id"], force=True)
    assert not left, f"containers left behind by {server.instance}: {[c['Names'] for c in left]}"
    leased = server.leases()
    for uid in leased:
        os.unlink(os.path.join(UID_DIR, str(uid)))
    assert not leased, f"uids left leased by {server.instance}: {leased}"
