"""The Docker implementation of the executor: the only module that knows Docker's wire details.

A session's sandbox is one container. Its name carries the session: `se-<instance>-<session>`
while it waits for a client, then `se-<instance>-<session>.p<pid>` once a worker claimed it.
Claims are renames, which the daemon makes atomic, so any gunicorn worker can serve the
WebSocket and exactly one ever does. A warm pool's containers (`se-<instance>-pool-<id>`) are
started ahead of time and taken for a session by the same kind of rename.

Inside, a small `sh` launcher reads the program from stdin (a header line `<bytes> <cols>
<rows>`, then the code), writes it to the source file, runs the compile stage if there is one,
and execs the program; /workspace is a tmpfs that exists only once the container runs, and the
root file system is read-only, so stdin is the way in.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shlex
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import docker
import docker.errors
import docker.types
import requests.exceptions

from . import launchers
from .executor import (
    AlreadyClaimed,
    CompileResult,
    Executor,
    ExecutorError,
    ExitStatus,
    Limits,
    RuntimeUnavailable,
    Sandbox,
    SandboxInfo,
    SandboxNotFound,
    SandboxSpec,
    Started,
    Stream,
    Terminal,
)
from .locks import exclusive

log = logging.getLogger(__name__)

API_VERSION = "1.41"
LABEL = "sandbox-engine"
LABEL_INSTANCE = "sandbox-engine.instance"
LABEL_LANGUAGE = "sandbox-engine.language"
LABEL_CREATED = "sandbox-engine.created"
LABEL_TTY = "sandbox-engine.tty"
LABEL_NONCE = "sandbox-engine.nonce"
LABEL_POOL = "sandbox-engine.pool"
LABEL_COMPILES = "sandbox-engine.compiles"
SANDBOX_USER = "10001:10001"
WORKDIR = "/workspace"
CLAIMING = "claiming"
TAKING = "taking"
POOL = "pool-"
_INSTANCE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,40}$")
_STREAMS = {1: Stream.STDOUT, 2: Stream.STDERR}
READY_MARK = b"\x1eSANDBOX-READY "
# The launcher's marks are short lines; a \x1e further back than this starts none.
MARK_MAX = 64
# How long a started tty sandbox may take to put its terminal in raw mode.
READY_TIMEOUT = 10.0

RENAME_STRIPES = 64

# Docker's errors that mean "the daemon is not there", as opposed to "it said no".
_UNREACHABLE = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError)


@contextmanager
def translated(doing: str, ignore: tuple[int, ...] = ()) -> Iterator[None]:
    """Turn docker-py's failures into the executor's errors, in the one place that knows them.

    `doing` completes "Docker could not ...". Statuses in `ignore` are outcomes the caller wants
    anyway (a 404 on a removal). The cause is kept, for the log; the message is for a person.
    """
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        if 404 in ignore:
            return
        raise RuntimeUnavailable(f"a sandbox image is missing; run `make images` ({doing})") from exc
    except docker.errors.APIError as exc:
        if exc.status_code in ignore:
            return
        raise ExecutorError(f"Docker could not {doing}: {exc.explanation}") from exc
    except _UNREACHABLE as exc:
        raise RuntimeUnavailable("Docker does not answer") from exc


def launch_command(
    command: tuple[str, ...], compile: tuple[str, ...] | None = None, tty: bool = False
) -> list[str]:
    """The launcher: a POSIX sh script that takes the program from stdin and execs it."""
    lines = ["umask 077", "nonce=$SANDBOX_NONCE"]
    if tty:
        # A terminal would echo the code and act on control characters in it: raw until it is
        # in, and say so, because the engine must not write before.
        lines += ["stty raw -echo", 'printf "\036SANDBOX-READY %s\n" "$nonce"']
    lines += [
        "read -r size cols rows || exit 0",
        # GNU head reads no byte past the count, so the program's input stays in stdin.
        'head -c "$size" > "$SANDBOX_SOURCE" || exit 126',
    ]
    if tty:
        # Docker 20.10 ignores the size given at create and refuses a resize before start, so the
        # terminal gets its size here, before the program's first instruction. Input typed before
        # the terminal is sane again would be taken raw, so the engine holds it until this mark.
        lines += [
            'stty sane cols "$cols" rows "$rows"',
            'printf "\036SANDBOX-STARTED %s\n" "$nonce"',
        ]
    lines.append("unset SANDBOX_SOURCE SANDBOX_NONCE TINI_KILL_PROCESS_GROUP size cols rows")
    if compile:
        lines += [
            # Compiler output is the client's stderr; the compiler gets no stdin of the user's.
            f"{shlex.join(compile)} </dev/null 1>&2; rc=$?",
            # The mark carries a per-sandbox nonce, so compiler output cannot forge it.
            'printf "\036SANDBOX-COMPILED %s %d\n" "$nonce" "$rc"',
            '[ "$rc" -eq 0 ] || exit "$rc"',
            # Wait for the engine's go: it first lowers the limits from the compile stage's.
            "stty -echo; read -r _ || exit 0; stty echo" if tty else "read -r _ || exit 0",
        ]
    lines += ["unset nonce", 'exec "$@"']
    return ["/bin/sh", "-c", "\n".join(lines), "launch", *command]


class DockerExecutor(Executor):
    def __init__(
        self, instance: str, docker_host: str | None = None, pool_size: int = 32, lock_dir: str | None = None
    ) -> None:
        if not _INSTANCE.match(instance):
            raise ValueError(f"instance name {instance!r}: letters, digits, '-' and '_' only")
        self.instance = instance
        self.prefix = f"se-{instance}-"
        # With lock files shared by every worker of the server, renames of one container are
        # serialised and one rename makes a claim; without, a claim takes two (see _rename).
        self.lock_dir = lock_dir
        # Starting a container keeps a core busy for tens of milliseconds (runc, the shim, the
        # cgroup): more starts at once than cores only make every one of them slower.
        self.starts = threading.BoundedSemaphore(os.cpu_count() or 2)
        # One client per worker, shared by its greenlets. The pool is sized for every session's
        # control calls at once; attach sockets are hijacked out of it and do not count.
        self.api = docker.APIClient(
            base_url=docker_host or "unix:///var/run/docker.sock",
            version=API_VERSION,
            timeout=30,
            max_pool_size=pool_size,
        )

    def _name(self, session_id: str) -> str:
        return self.prefix + session_id

    def create(self, spec: SandboxSpec) -> dict:
        nonce = secrets.token_hex(8)
        env = dict(spec.env)
        env["SANDBOX_SOURCE"] = spec.source_file
        env["SANDBOX_NONCE"] = nonce
        # docker-init is tini: this makes it pass the signals it gets to the program's whole
        # process group, which is how a client's SIGINT reaches every process of the program.
        env["TINI_KILL_PROCESS_GROUP"] = "1"
        if spec.tty:
            env.setdefault("TERM", "xterm-256color")
        # The container starts under the compile stage's limits when there is one.
        limits = spec.compile_limits if spec.compile and spec.compile_limits else spec.limits
        tmpfs_opts = f"rw,exec,nosuid,nodev,size={spec.limits.disk}"
        host_config = self.api.create_host_config(
            read_only=True,
            tmpfs={
                # exec: compiled programs run from here; Docker mounts tmpfs noexec otherwise.
                WORKDIR: f"{tmpfs_opts},uid=10001,gid=10001,mode=0700",
                "/tmp": f"{tmpfs_opts},mode=1777",
            },
            network_mode="none",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            init=True,
            pids_limit=limits.pids,
            nano_cpus=int(limits.cpus * 1e9),
            mem_limit=limits.memory,
            memswap_limit=limits.memory,
            ulimits=[docker.types.Ulimit(name="nofile", soft=256, hard=256)],
            log_config=docker.types.LogConfig(type="none"),
        )
        pooled = spec.session_id is None
        labels = {
            LABEL: "1",
            LABEL_INSTANCE: self.instance,
            LABEL_LANGUAGE: spec.language,
            LABEL_CREATED: f"{time.time():.3f}",
            LABEL_NONCE: nonce,
            LABEL_COMPILES: "1" if spec.compile else "",
            LABEL_TTY: "1" if spec.tty else "",
            LABEL_POOL: "1" if pooled else "",
        }
        name = self._name(f"{POOL}{uuid.uuid4().hex[:12]}" if pooled else spec.session_id)
        create = dict(
            image=spec.image,
            command=self._command(spec),
            name=name,
            user=SANDBOX_USER,
            working_dir=WORKDIR,
            environment=env,
            labels=labels,
            # docker-py sets StdinOnce with stdin_open: the attach stream's EOF then closes
            # the program's stdin, which is how `eof` works.
            stdin_open=True,
            tty=spec.tty,
            network_disabled=True,
            host_config=host_config,
        )
        # The image is named in the error: "a sandbox image is missing" alone would not say which.
        if pooled:
            with translated(f"create a sandbox of {spec.image}"):
                created = self.api.create_container(**create)
            try:
                # Warm: started now, its launcher waiting for a program on stdin.
                with self.starts, translated("start a pool sandbox"):
                    self.api.start(created["Id"])
            except ExecutorError:
                with translated("remove a pool sandbox that did not start", ignore=(404, 409)):
                    self.api.remove_container(created["Id"], force=True)
                raise
        else:
            with translated(f"create a sandbox of {spec.image}"):
                self.api.create_container(**create)
        return _facts(labels, running=pooled)

    @staticmethod
    def _command(spec: SandboxSpec) -> list[str]:
        if spec.launcher == "python" and not spec.compile:
            # The interpreter starts now and waits for the program: a warm sandbox skips its start-up.
            return ["python3", "-u", "-c", launchers.source("python")]
        return launch_command(spec.command, spec.compile, spec.tty)

    def _info(self, row: dict) -> SandboxInfo:
        labels = row.get("Labels") or {}
        state = row.get("State", "")
        name = (row.get("Names") or ["/"])[0].lstrip("/")
        base, _, suffix = name[len(self.prefix) :].partition(".")
        pooled = base.startswith(POOL)
        return SandboxInfo(
            session_id="" if pooled else base,
            language=labels.get(LABEL_LANGUAGE, ""),
            created_at=float(labels.get(LABEL_CREATED, "0") or 0),
            claimed=bool(suffix),
            running=state == "running",
            exited=state in ("exited", "dead"),
            labels={**labels, "name": name, "id": row.get("Id", "")},
            pooled=pooled,
            tty=labels.get(LABEL_TTY) == "1",
        )

    def _containers(self, name: str | None = None) -> list[dict]:
        filters: dict = {"label": [f"{LABEL_INSTANCE}={self.instance}"]}
        if name is not None:
            filters["name"] = [name]
        with translated("list the sandboxes"):
            rows = self.api.containers(all=True, filters=filters)
        return rows

    def find(self, session_id: str) -> SandboxInfo | None:
        # Docker's name filter matches a part of the name: the session's name, claimed or not.
        rows = [
            row
            for row in self._containers(self._name(session_id))
            if self._info(row).session_id == session_id
        ]
        return self._info(rows[0]) if rows else None

    def list(self) -> list[SandboxInfo]:
        return [self._info(row) for row in self._containers()]

    def owner_of(self, info: SandboxInfo) -> str | None:
        if not info.claimed:
            return None
        owner = info.labels["name"].rsplit(".", 1)[1]
        return None if owner == CLAIMING else owner

    def _rename_lock(self, name: str) -> AbstractContextManager[None]:
        # Striped: renames of different containers go on at once; of one, one at a time.
        stripe = zlib.crc32(name.encode()) % RENAME_STRIPES
        return exclusive(os.path.join(self.lock_dir, f".rename-{stripe}.lock"))

    def _rename(self, old: str, new: str, fixed: str) -> None:
        """Rename atomically: of racing renames of `old`, exactly one succeeds.

        The daemon looks a container up by name before it locks it, so two renames of one name
        to different names can both succeed. Serialised by the lock file, one rename is safe;
        without it, the first rename goes to one fixed name, which only one can take.
        """
        if self.lock_dir is not None:
            with self._rename_lock(old):
                self.api.rename(old, new)
            return
        self.api.rename(old, fixed)
        self.api.rename(fixed, new)

    def take_pooled(self, session_id: str, candidates: list[SandboxInfo]) -> dict | None:
        """Make one of the pool's containers this session's; its facts, or None if none was had."""
        for info in candidates:
            name = info.labels["name"]
            try:
                with translated("take a pool sandbox"):
                    self._rename(name, self._name(session_id), f"{name}.{TAKING}")
            except RuntimeUnavailable:
                raise
            except ExecutorError:
                continue  # another session took it first
            return {**_facts(info.labels, running=True), "sandbox": name}
        return None

    def claim(self, session_id: str, owner: str, facts: dict | None = None) -> Sandbox:
        name = self._name(session_id)
        try:
            with translated("claim the sandbox"):
                self._rename(name, f"{name}.{owner}", f"{name}.{CLAIMING}")
        except RuntimeUnavailable:
            raise
        except ExecutorError as exc:
            status = getattr(exc.__cause__, "status_code", None)
            if status == 404 and self.find(session_id) is None:
                raise SandboxNotFound(session_id) from exc
            if status in (400, 404, 409):
                raise AlreadyClaimed(session_id) from exc
            raise
        if facts is None:
            details = self._inspect(f"{name}.{owner}")
            facts = _facts(details["Config"]["Labels"], running=details["State"]["Running"])
        return DockerSandbox(
            self.api,
            f"{name}.{owner}",
            session_id,
            tty=facts["tty"],
            nonce=facts["nonce"],
            compiles=facts["compiles"],
            running=facts["running"],
            starts=self.starts,
        )

    def _inspect(self, container: str) -> dict:
        with translated("inspect the sandbox"):
            details = self.api.inspect_container(container)
        return details

    def remove(self, session_id: str) -> None:
        info = self.find(session_id)
        if info is not None:
            _remove(self.api, info.labels["id"])

    def remove_sandbox(self, info: SandboxInfo) -> None:
        _remove(self.api, info.labels["id"])

    def check(self, images: list[str]) -> str | None:
        try:
            with translated("answer a ping"):
                self.api.ping()
            for image in images:
                with translated(f"find the image {image}", ignore=(404,)):
                    self.api.inspect_image(image)
                    continue
                # Reached only when the image's 404 was let through.
                return f"the image {image} is missing; run `make images`"
        except ExecutorError as exc:
            log.info("not ready: %s", exc, exc_info=exc.__cause__)
            return str(exc)
        return None

    def image_labels(self, image: str) -> dict[str, str]:
        try:
            with translated(f"inspect the image {image}"):
                return self.api.inspect_image(image)["Config"].get("Labels") or {}
        except ExecutorError as exc:
            log.debug("no labels for %s: %s", image, exc)
        return {}

    def close(self) -> None:
        self.api.close()


def _facts(labels: dict[str, str], running: bool) -> dict:
    """What a worker must know of a sandbox to drive it, kept with the session's record."""
    return {
        "tty": labels.get(LABEL_TTY) == "1",
        "nonce": labels.get(LABEL_NONCE, ""),
        "compiles": bool(labels.get(LABEL_COMPILES)),
        "running": running,
    }


def _remove(api: docker.APIClient, container: str) -> None:
    # 404: gone already; 409: removal already in progress, started by someone else.
    with translated("remove the sandbox", ignore=(404, 409)):
        api.remove_container(container, force=True)


class DockerSandbox(Sandbox):
    """A claimed container and its hijacked attach connection, framed as Docker multiplexes it
    (or raw, for a tty), with the launcher's compile mark taken out of the stream."""

    def __init__(
        self,
        api: docker.APIClient,
        container: str,
        session_id: str,
        tty: bool = False,
        nonce: str = "",
        compiles: bool = False,
        running: bool = False,
        starts: threading.BoundedSemaphore | None = None,
    ) -> None:
        self.api = api
        self.container = container
        self.session_id = session_id
        self.tty = tty
        self.compiles = compiles
        self._nonce = nonce.encode()
        self._running = running
        self._starts = starts or threading.BoundedSemaphore(1)
        self._early = b""
        self._sock: socket.socket | None = None
        self._write_lock = threading.Lock()
        self._closed = False

    def start(self, code: bytes, terminal: Terminal | None = None) -> None:
        with translated("attach to the sandbox"):
            attached = self.api.attach_socket(
                self.container, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            )
        # docker-py hands back a SocketIO wrapper; the socket beneath is what we must read,
        # write, half-close and finally shut down.
        self._sock = getattr(attached, "_sock", attached)
        if not self._running:
            # Attached first, started second: nothing the program writes can be missed.
            with self._starts, translated("start the sandbox"):
                self.api.start(self.container)
            if self.tty:
                self._wait_until_ready()
        size = terminal or Terminal()
        self.write(f"{len(code)} {size.cols} {size.rows}\n".encode() + code)

    def _wait_until_ready(self) -> None:
        """A tty launcher says when its terminal is raw; what it wrote before is no one's output."""
        assert self._sock is not None
        mark = READY_MARK + self._nonce + b"\n"
        self._sock.settimeout(READY_TIMEOUT)
        seen = b""
        try:
            while mark not in seen:
                data = self._sock.recv(4096)
                if not data:
                    break
                seen += data
        except TimeoutError as exc:
            raise ExecutorError("the sandbox's terminal did not get ready") from exc
        finally:
            self._sock.settimeout(None)
        self._early = seen.partition(mark)[2]

    def output(self) -> Iterator[tuple[Stream, bytes] | Started | CompileResult]:
        chunks = self._raw() if self.tty else self._frames()
        expected = int(self.tty) + int(self.compiles)
        if not expected:
            yield from chunks
            return
        # The launcher's marks come on stdout; until the last is seen, bytes that could begin
        # one are held back, and everything else goes on at once.
        mark = re.compile(
            rb"\x1eSANDBOX-(STARTED|COMPILED) " + re.escape(self._nonce) + rb"(?: (-?\d+))?\r?\n"
        )
        pending = b""
        for stream, data in chunks:
            if not expected or stream is not Stream.STDOUT:
                yield stream, data
                continue
            pending += data
            while expected and (found := mark.search(pending)):
                if found.start():
                    yield Stream.STDOUT, pending[: found.start()]
                yield Started() if found.group(1) == b"STARTED" else CompileResult(int(found.group(2)))
                pending = pending[found.end() :]
                expected -= 1
            cut = pending.rfind(b"\x1e") if expected else -1
            if cut < 0 or len(pending) - cut > MARK_MAX:
                cut = len(pending)
            if cut:
                yield Stream.STDOUT, pending[:cut]
                pending = pending[cut:]
        if pending:
            yield Stream.STDOUT, pending

    def _recv(self) -> bytes:
        assert self._sock is not None, "start() first"
        try:
            return self._sock.recv(65536)
        except OSError as exc:
            if self._closed:
                return b""
            raise RuntimeUnavailable("the connection to Docker broke") from exc

    def _raw(self) -> Iterator[tuple[Stream, bytes]]:
        """A tty's stream: one, not multiplexed."""
        if self._early:
            yield Stream.STDOUT, self._early
        while data := self._recv():
            yield Stream.STDOUT, data

    def _frames(self) -> Iterator[tuple[Stream, bytes]]:
        """Demultiplex Docker's frames: an 8-byte header (stream, 0, 0, 0, size:u32be), then data."""
        buffer = bytearray()
        while data := self._recv():
            buffer += data
            while len(buffer) >= 8:
                size = int.from_bytes(buffer[4:8], "big")
                if len(buffer) < 8 + size:
                    break
                stream = _STREAMS.get(buffer[0])
                payload = bytes(buffer[8 : 8 + size])
                del buffer[: 8 + size]
                if stream is not None and payload:
                    yield stream, payload

    def set_limits(self, limits: Limits) -> None:
        # docker-py's update_container knows neither NanoCpus nor PidsLimit; the API does.
        body = {
            "Memory": limits.memory,
            "MemorySwap": limits.memory,
            "NanoCpus": int(limits.cpus * 1e9),
            "PidsLimit": limits.pids,
        }
        with translated("change the sandbox's limits"):
            response = self.api._post_json(self.api._url("/containers/{0}/update", self.container), data=body)
            self.api._raise_for_status(response)

    def go(self) -> None:
        # The launcher waits in `read` for one line.
        self.write(b"\n")

    def signal(self, name: str) -> None:
        with translated(f"send {name}", ignore=(404, 409)):
            self.api.kill(self.container, signal=name)

    def resize(self, cols: int, rows: int) -> None:
        with translated("resize the terminal", ignore=(404, 409)):
            self.api.resize(self.container, height=rows, width=cols)

    def write(self, data: bytes) -> None:
        if self._sock is None or self._closed:
            return
        with self._write_lock:
            try:
                self._sock.sendall(data)
            except OSError:
                # stdin already closed (eof, or the program ended): input has nowhere to go.
                pass

    def close_stdin(self) -> None:
        if self.tty:
            # A tty's EOF is the line discipline's ^D; half-closing the attach does not reach it.
            self.write(b"\x04")
            return
        if self._sock is not None and not self._closed:
            with self._write_lock:
                try:
                    self._sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

    def kill(self) -> None:
        # 404 gone, 409 not running: either way it is not running any more.
        with translated("kill the sandbox", ignore=(404, 409)):
            self.api.kill(self.container)

    def wait(self, timeout: float) -> ExitStatus:
        with translated("learn how the sandbox ended"):
            result = self.api.wait(self.container, timeout=timeout)
            state = self.api.inspect_container(self.container)["State"]
        return ExitStatus(exit_code=result.get("StatusCode"), oom_killed=bool(state.get("OOMKilled")))

    def remove(self) -> None:
        self._close_socket()
        _remove(self.api, self.container)

    def _close_socket(self) -> None:
        # Shut the socket down both ways, not just close the wrapper: a half-open attach keeps
        # the daemon's copy loop alive and can stall a later kill for 30 s.
        self._closed = True
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
