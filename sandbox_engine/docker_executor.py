"""The Docker implementation of the executor: the only module that knows Docker's wire details.

A session's sandbox is one container, created (not started) when the session is created and
carrying the session's identity in labels. Attaching claims it atomically by renaming it, so
any gunicorn worker can serve the WebSocket and exactly one ever does.
"""

from __future__ import annotations

import logging
import re
import secrets
import shlex
import socket
import threading
from collections.abc import Iterator

import docker
import docker.errors
import docker.types
import requests.exceptions

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
    Stream,
)

log = logging.getLogger(__name__)

API_VERSION = "1.41"
LABEL = "sandbox-engine"
LABEL_INSTANCE = "sandbox-engine.instance"
LABEL_SESSION = "sandbox-engine.session"
LABEL_LANGUAGE = "sandbox-engine.language"
LABEL_CREATED = "sandbox-engine.created"
LABEL_TTY = "sandbox-engine.tty"
LABEL_NONCE = "sandbox-engine.nonce"
SANDBOX_USER = "10001:10001"
WORKDIR = "/workspace"
# Environment strings are capped by the kernel at 128 KiB each; code travels in pieces well below.
CODE_CHUNK_CHARS = 16384
CLAIMING = "claiming"
_INSTANCE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,40}$")
_STREAMS = {1: Stream.STDOUT, 2: Stream.STDERR}

# Docker's errors that mean "the daemon is not there", as opposed to "it said no".
_UNREACHABLE = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError)


COMPILED_MARK = b"\x1eSANDBOX-COMPILED "


def launch_command(
    chunks: int,
    command: tuple[str, ...],
    compile: tuple[str, ...] | None = None,
    tty: bool = False,
) -> list[str]:
    """A POSIX sh script that writes the code from the environment to the source file, runs the
    compile stage if there is one, then execs the program.

    The code travels in environment variables because the sandbox's /workspace is a tmpfs that
    exists only once the container runs, and the root file system is read-only; the variables
    are unset before anything else runs, so neither compiler nor program sees them.
    """
    names = [f"SANDBOX_CODE_{i}" for i in range(chunks)]
    lines = [
        "umask 077",
        "printf %s " + " ".join(f'"${n}"' for n in names) + ' > "$SANDBOX_SOURCE" || exit 126',
        "nonce=$SANDBOX_NONCE",
        "unset SANDBOX_SOURCE SANDBOX_NONCE TINI_KILL_PROCESS_GROUP " + " ".join(names),
    ]
    if tty:
        # Docker 20.10 ignores the size given at create and refuses a resize before start, so the
        # terminal gets its size here, before the program's first instruction.
        lines.append(
            'stty cols "$SANDBOX_COLS" rows "$SANDBOX_ROWS" 2>/dev/null; unset SANDBOX_COLS SANDBOX_ROWS'
        )
    if compile:
        lines += [
            # Compiler output is the client's stderr; the compiler gets no stdin of the user's.
            f"{shlex.join(compile)} </dev/null 1>&2; rc=$?",
            # The mark carries a per-session nonce, so compiler output cannot forge it.
            'printf "\036SANDBOX-COMPILED %s %d\n" "$nonce" "$rc"',
            '[ "$rc" -eq 0 ] || exit "$rc"',
            # Wait for the engine's go: it first lowers the limits from the compile stage's.
            "stty -echo 2>/dev/null; read -r _ || exit 0; stty echo 2>/dev/null"
            if tty
            else "read -r _ || exit 0",
        ]
    lines.append('exec "$@"')
    return ["/bin/sh", "-c", "\n".join(lines), "launch", *command]


class DockerExecutor(Executor):
    def __init__(self, instance: str, docker_host: str | None = None, pool_size: int = 32) -> None:
        if not _INSTANCE.match(instance):
            raise ValueError(f"instance name {instance!r}: letters, digits, '-' and '_' only")
        self.instance = instance
        self.prefix = f"se-{instance}-"
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

    def create(self, spec: SandboxSpec) -> None:
        chunks = [spec.code[i : i + CODE_CHUNK_CHARS] for i in range(0, len(spec.code), CODE_CHUNK_CHARS)]
        nonce = secrets.token_hex(8)
        env = dict(spec.env)
        env["SANDBOX_SOURCE"] = spec.source_file
        env["SANDBOX_NONCE"] = nonce
        # docker-init is tini: this makes it pass the signals it gets to the program's whole
        # process group, which is how a client's SIGINT reaches every process of the program.
        env["TINI_KILL_PROCESS_GROUP"] = "1"
        env.update({f"SANDBOX_CODE_{i}": chunk for i, chunk in enumerate(chunks)})
        if spec.terminal is not None:
            env.update(SANDBOX_COLS=str(spec.terminal.cols), SANDBOX_ROWS=str(spec.terminal.rows))
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
        labels = {
            LABEL: "1",
            LABEL_INSTANCE: self.instance,
            LABEL_SESSION: spec.session_id,
            LABEL_LANGUAGE: spec.language,
            LABEL_CREATED: f"{spec.created_at:.3f}",
            LABEL_NONCE: nonce if spec.compile else "",
            LABEL_TTY: "1" if spec.terminal is not None else "",
        }
        try:
            self.api.create_container(
                image=spec.image,
                command=launch_command(len(chunks), spec.command, spec.compile, spec.terminal is not None),
                name=self._name(spec.session_id),
                user=SANDBOX_USER,
                working_dir=WORKDIR,
                environment=env,
                labels=labels,
                # docker-py sets StdinOnce with stdin_open: the attach stream's EOF then closes
                # the program's stdin, which is how `eof` works.
                stdin_open=True,
                tty=spec.terminal is not None,
                network_disabled=True,
                host_config=host_config,
            )
        except docker.errors.ImageNotFound:
            raise RuntimeUnavailable(f"the image {spec.image} is missing; run `make images`") from None
        except _UNREACHABLE as exc:
            raise RuntimeUnavailable(f"Docker does not answer: {exc}") from None
        except docker.errors.APIError as exc:
            raise ExecutorError(f"Docker refused to create the sandbox: {exc.explanation}") from None

    def _info(self, row: dict) -> SandboxInfo:
        labels = row.get("Labels") or {}
        state = row.get("State", "")
        name = (row.get("Names") or ["/"])[0].lstrip("/")
        return SandboxInfo(
            session_id=labels.get(LABEL_SESSION, ""),
            language=labels.get(LABEL_LANGUAGE, ""),
            created_at=float(labels.get(LABEL_CREATED, "0") or 0),
            claimed=name != self._name(labels.get(LABEL_SESSION, "")),
            running=state == "running",
            exited=state in ("exited", "dead"),
            labels={**labels, "name": name, "id": row.get("Id", "")},
        )

    def _containers(self, *label_filters: str) -> list[dict]:
        try:
            return self.api.containers(
                all=True, filters={"label": [f"{LABEL_INSTANCE}={self.instance}", *label_filters]}
            )
        except _UNREACHABLE as exc:
            raise RuntimeUnavailable(f"Docker does not answer: {exc}") from None
        except docker.errors.APIError as exc:
            raise ExecutorError(str(exc)) from None

    def find(self, session_id: str) -> SandboxInfo | None:
        rows = self._containers(f"{LABEL_SESSION}={session_id}")
        return self._info(rows[0]) if rows else None

    def list(self) -> list[SandboxInfo]:
        return [self._info(row) for row in self._containers()]

    def owner_of(self, info: SandboxInfo) -> str | None:
        if not info.claimed:
            return None
        suffix = info.labels["name"].rsplit(".", 1)
        return suffix[1] if len(suffix) == 2 else None

    def claim(self, session_id: str, owner: str) -> Sandbox:
        name = self._name(session_id)
        try:
            # Renaming to one fixed name is atomic in the daemon: of racing claims, one wins and
            # the rest get a conflict or a 404. The second rename records the winner's identity.
            self.api.rename(name, f"{name}.{CLAIMING}")
            self.api.rename(f"{name}.{CLAIMING}", f"{name}.{owner}")
        except docker.errors.NotFound:
            if self.find(session_id) is None:
                raise SandboxNotFound(session_id) from None
            raise AlreadyClaimed(session_id) from None
        except docker.errors.APIError as exc:
            if exc.status_code in (400, 409):
                raise AlreadyClaimed(session_id) from None
            raise ExecutorError(str(exc)) from None
        except _UNREACHABLE as exc:
            raise RuntimeUnavailable(f"Docker does not answer: {exc}") from None
        labels = self._inspect(f"{name}.{owner}")["Config"]["Labels"]
        return DockerSandbox(
            self.api,
            f"{name}.{owner}",
            session_id,
            tty=labels.get(LABEL_TTY) == "1",
            nonce=labels.get(LABEL_NONCE) or None,
        )

    def _inspect(self, container: str) -> dict:
        try:
            return self.api.inspect_container(container)
        except _UNREACHABLE as exc:
            raise RuntimeUnavailable(f"Docker does not answer: {exc}") from None
        except docker.errors.APIError as exc:
            raise ExecutorError(str(exc)) from None

    def remove(self, session_id: str) -> None:
        for row in self._containers(f"{LABEL_SESSION}={session_id}"):
            _remove(self.api, row["Id"])

    def check(self, images: list[str]) -> str | None:
        try:
            self.api.ping()
            for image in images:
                try:
                    self.api.inspect_image(image)
                except docker.errors.ImageNotFound:
                    return f"the image {image} is missing; run `make images`"
        except (*_UNREACHABLE, docker.errors.DockerException) as exc:
            return f"Docker does not answer: {exc}"
        return None

    def close(self) -> None:
        self.api.close()


def _remove(api: docker.APIClient, container: str) -> None:
    try:
        api.remove_container(container, force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        # 409: removal already in progress, started by someone else; that is what we want.
        if exc.status_code != 409:
            raise ExecutorError(str(exc)) from None
    except _UNREACHABLE as exc:
        raise RuntimeUnavailable(f"Docker does not answer: {exc}") from None


class DockerSandbox(Sandbox):
    """A claimed container and its hijacked attach connection, framed as Docker multiplexes it
    (or raw, for a tty), with the launcher's compile mark taken out of the stream."""

    def __init__(
        self,
        api: docker.APIClient,
        container: str,
        session_id: str,
        tty: bool = False,
        nonce: str | None = None,
    ) -> None:
        self.api = api
        self.container = container
        self.session_id = session_id
        self.tty = tty
        self.compiles = nonce is not None
        self._mark = COMPILED_MARK + nonce.encode() + b" " if nonce else b""
        self._sock: socket.socket | None = None
        self._write_lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        try:
            attached = self.api.attach_socket(
                self.container, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            )
            # docker-py hands back a SocketIO wrapper; the socket beneath is what we must read,
            # write, half-close and finally shut down.
            self._sock = getattr(attached, "_sock", attached)
            self.api.start(self.container)
        except _UNREACHABLE as exc:
            raise RuntimeUnavailable(f"Docker does not answer: {exc}") from None
        except docker.errors.APIError as exc:
            raise ExecutorError(f"Docker could not start the sandbox: {exc.explanation}") from None

    def output(self) -> Iterator[tuple[Stream, bytes] | CompileResult]:
        chunks = self._raw() if self.tty else self._frames()
        if not self.compiles:
            yield from chunks
            return
        # Until the compile mark is seen, stdout bytes that could be the mark's beginning are
        # held back; everything else goes on at once.
        mark, pending, compiled = self._mark, b"", False
        for stream, data in chunks:
            if compiled or stream is not Stream.STDOUT:
                yield stream, data
                continue
            pending += data
            at = pending.find(mark)
            if at < 0:
                keep = _overlap(pending, mark)
                if len(pending) > keep:
                    yield Stream.STDOUT, pending[: len(pending) - keep]
                    pending = pending[len(pending) - keep :]
                continue
            end = pending.find(b"\n", at)
            if end < 0:
                continue
            if at:
                yield Stream.STDOUT, pending[:at]
            yield CompileResult(int(pending[at + len(mark) : end].strip()))
            compiled = True
            if pending[end + 1 :]:
                yield Stream.STDOUT, pending[end + 1 :]
            pending = b""
        if pending:
            yield Stream.STDOUT, pending

    def _recv(self) -> bytes:
        assert self._sock is not None, "start() first"
        try:
            return self._sock.recv(65536)
        except OSError as exc:
            if self._closed:
                return b""
            raise RuntimeUnavailable(f"the connection to Docker broke: {exc}") from None

    def _raw(self) -> Iterator[tuple[Stream, bytes]]:
        """A tty's stream: one, not multiplexed."""
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
        try:
            response = self.api._post_json(self.api._url("/containers/{0}/update", self.container), data=body)
            self.api._raise_for_status(response)
        except _UNREACHABLE as exc:
            raise RuntimeUnavailable(f"Docker does not answer: {exc}") from None
        except docker.errors.APIError as exc:
            raise ExecutorError(f"Docker could not change the limits: {exc.explanation}") from None

    def go(self) -> None:
        # The launcher waits in `read` for one line.
        self.write(b"\n")

    def signal(self, name: str) -> None:
        try:
            self.api.kill(self.container, signal=name)
        except docker.errors.APIError as exc:
            if exc.status_code not in (404, 409):
                raise ExecutorError(str(exc)) from None
        except _UNREACHABLE as exc:
            raise RuntimeUnavailable(f"Docker does not answer: {exc}") from None

    def resize(self, cols: int, rows: int) -> None:
        try:
            self.api.resize(self.container, height=rows, width=cols)
        except docker.errors.APIError as exc:
            if exc.status_code not in (404, 409):
                raise ExecutorError(str(exc)) from None
        except _UNREACHABLE as exc:
            raise RuntimeUnavailable(f"Docker does not answer: {exc}") from None

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
        try:
            self.api.kill(self.container)
        except docker.errors.APIError as exc:
            # 404 gone, 409 not running: either way it is not running any more.
            if exc.status_code not in (404, 409):
                raise ExecutorError(str(exc)) from None
        except _UNREACHABLE as exc:
            raise RuntimeUnavailable(f"Docker does not answer: {exc}") from None

    def wait(self, timeout: float) -> ExitStatus:
        try:
            result = self.api.wait(self.container, timeout=timeout)
            state = self.api.inspect_container(self.container)["State"]
        except _UNREACHABLE as exc:
            raise RuntimeUnavailable(f"Docker does not answer: {exc}") from None
        except docker.errors.APIError as exc:
            raise ExecutorError(str(exc)) from None
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


def _overlap(data: bytes, mark: bytes) -> int:
    """How many bytes at the end of data could be the beginning of mark."""
    for size in range(min(len(data), len(mark) - 1), 0, -1):
        if data.endswith(mark[:size]):
            return size
    return 0
