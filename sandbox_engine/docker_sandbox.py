"""One claimed Docker container as a Sandbox: its hijacked attach connection and its controls.

Docker multiplexes stdout and stderr on the attach stream unless there is a tty; `framing`
takes that apart and takes the launcher's marks out, so what leaves here is the program's own
output in order, with the compile stage's end and a tty's readiness between its bytes.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import docker

from . import framing, launch
from .docker_api import remove_container, translated, update_limits
from .executor import (
    ExecutorError,
    ExitStatus,
    Limits,
    Output,
    RuntimeUnavailable,
    Sandbox,
    SandboxRef,
    Stream,
    Terminal,
)

# How long a started tty sandbox may take to put its terminal in raw mode.
READY_TIMEOUT = 10.0


class DockerSandbox(Sandbox):
    """A claimed container and its hijacked attach connection, framed as Docker multiplexes it
    (or raw, for a tty), with the launcher's compile mark taken out of the stream."""

    def __init__(
        self,
        api: docker.APIClient,
        ref: SandboxRef,
        session_id: str,
        starts: threading.BoundedSemaphore | None = None,
        fixed_limits: bool = False,
    ) -> None:
        self.api = api
        # By id: the container's name changes as it is claimed, its id never.
        self.container = ref.id
        self.session_id = session_id
        self.tty = ref.tty
        self.compiles = ref.compiles
        self._nonce = ref.nonce
        self._running = ref.running
        self._starts = starts or threading.BoundedSemaphore(1)
        # Created under the run's limits, which the runtime cannot change (runsc): nothing to lower.
        self._fixed_limits = fixed_limits
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
        self.write(launch.header(code, terminal))

    def _wait_until_ready(self) -> None:
        """A tty launcher says when its terminal is raw; what it wrote before is no one's output."""
        assert self._sock is not None
        mark = launch.mark(launch.READY, self._nonce)
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

    def output(self) -> Iterator[Output]:
        items = self._raw() if self.tty else framing.demultiplex(self._chunks())
        return framing.take_marks(items, self._nonce, int(self.tty) + int(self.compiles))

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
        for data in self._chunks():
            yield Stream.STDOUT, data

    def _chunks(self) -> Iterator[bytes]:
        while data := self._recv():
            yield data

    def set_limits(self, limits: Limits) -> None:
        if not self._fixed_limits:
            update_limits(self.api, self.container, limits)

    def go(self) -> None:
        self.write(launch.GO)

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
        remove_container(self.api, self.container)

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
