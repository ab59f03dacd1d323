"""The end-to-end harness: a real `sandbox-engine serve` on the real Docker daemon, and a client."""

from __future__ import annotations

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
import requests
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
# How soon every worker of a server sees a change of its API keys.
KEYS_SEEN_WITHIN = 1.0
# Every instance this test run started, for the end-of-suite leak check.
STARTED_INSTANCES: set[str] = set()


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

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http") :]

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
        return [c for c in self.containers() if "-pool-" not in c["Names"][0]]

    def session_containers(self, session_id: str) -> list[dict]:
        """The session's container, by its name: `se-<instance>-<session>`, claimed or not."""
        return [c for c in self.containers() if c["Names"][0].lstrip("/").split(".")[0].endswith(session_id)]

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
        return subprocess.run(
            [os.path.join(VENV_BIN, "sandbox-engine"), "keys", *args]
            + ["--state-dir", self.state_dir, "--instance", self.instance],
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
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


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

    def __init__(self, ws: ClientConnection, after: int = 0) -> None:
        self.ws = ws
        self.t0 = time.monotonic()
        self.messages: list[tuple[float, dict]] = []
        # Every session message carries the next seq (checked here, for every test), kept apart
        # so that tests compare messages as they compare them without it; a gap says what it skips.
        self.seqs: list[int] = []
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
    """A real `sandbox-engine serve`, once it is ready (or, with ready=False, once it answers)."""
    port = free_port()
    instance = instance or f"t{uuid.uuid4().hex[:10]}"
    STARTED_INSTANCES.add(instance)
    state_dir = state_dir or str(tmp_path_factory.mktemp("state"))
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
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()
    left = server.wait_no_containers(timeout=5)
    for container in left:
        server.docker.api.remove_container(container["Id"], force=True)
    assert not left, f"containers left behind by {server.instance}: {[c['Names'] for c in left]}"
    leased = server.leases()
    for uid in leased:
        os.unlink(os.path.join(UID_DIR, str(uid)))
    assert not leased, f"uids left leased by {server.instance}: {leased}"
