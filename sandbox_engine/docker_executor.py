"""The Docker implementation of the executor: the only module that knows Docker's wire details.

A session's sandbox is one container, created (not started) when the session is created and
carrying the session's identity in labels. Attaching claims it atomically by renaming it, so
any gunicorn worker can serve the WebSocket and exactly one ever does.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
from collections.abc import Iterator

import docker
import docker.errors
import docker.types
import requests.exceptions

from .executor import (
    AlreadyClaimed,
    Executor,
    ExecutorError,
    ExitStatus,
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
SANDBOX_USER = "10001:10001"
WORKDIR = "/workspace"
# Environment strings are capped by the kernel at 128 KiB each; code travels in pieces well below.
CODE_CHUNK_CHARS = 16384
CLAIMING = "claiming"
_INSTANCE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,40}$")
_STREAMS = {1: Stream.STDOUT, 2: Stream.STDERR}

# Docker's errors that mean "the daemon is not there", as opposed to "it said no".
_UNREACHABLE = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError)


def launch_command(chunks: int, command: tuple[str, ...]) -> list[str]:
    """A POSIX sh line that writes the code from the environment to the source file, then execs.

    The code travels in environment variables because the sandbox's /workspace is a tmpfs that
    exists only once the container runs, and the root file system is read-only; the variables
    are unset before the program starts so it never sees them.
    """
    names = [f"SANDBOX_CODE_{i}" for i in range(chunks)]
    script = (
        "umask 077 && printf %s "
        + " ".join(f'"${n}"' for n in names)
        + ' > "$SANDBOX_SOURCE" && unset SANDBOX_SOURCE '
        + " ".join(names)
        + ' && exec "$@"'
    )
    return ["/bin/sh", "-c", script, "launch", *command]


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
        env = dict(spec.env)
        env["SANDBOX_SOURCE"] = spec.source_file
        env.update({f"SANDBOX_CODE_{i}": chunk for i, chunk in enumerate(chunks)})
        limits = spec.limits
        tmpfs_opts = f"rw,exec,nosuid,nodev,size={limits.disk}"
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
        }
        try:
            self.api.create_container(
                image=spec.image,
                command=launch_command(len(chunks), spec.command),
                name=self._name(spec.session_id),
                user=SANDBOX_USER,
                working_dir=WORKDIR,
                environment=env,
                labels=labels,
                # docker-py sets StdinOnce with stdin_open: the attach stream's EOF then closes
                # the program's stdin, which is how `eof` works.
                stdin_open=True,
                tty=False,
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
        return DockerSandbox(self.api, f"{name}.{owner}", session_id)

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
    """A claimed container and its hijacked attach connection, framed as Docker multiplexes it."""

    def __init__(self, api: docker.APIClient, container: str, session_id: str) -> None:
        self.api = api
        self.container = container
        self.session_id = session_id
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

    def output(self) -> Iterator[tuple[Stream, bytes]]:
        """Demultiplex Docker's frames: an 8-byte header (stream, 0, 0, 0, size:u32be), then data."""
        assert self._sock is not None, "start() first"
        buffer = bytearray()
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError as exc:
                if self._closed:
                    return
                raise RuntimeUnavailable(f"the connection to Docker broke: {exc}") from None
            if not data:
                return
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
