"""One claimed Docker container as a Sandbox: its hijacked attach connection and its controls.

Docker multiplexes stdout and stderr on the attach stream unless there is a tty; `framing`
takes that apart and takes the launcher's marks out, so what leaves here is the program's own
output in order, with the compile stage's end and a tty's readiness between its bytes.

The compile stage runs as a `docker exec` beside the launcher, in the compile stage's group (see
launch for why): its output is read from its own connection, up to its se-run's EXIT mark, which
says how it ended. A warm pool's sandbox may have it started ahead (see launch.compile_waiter):
then its output comes on the attach stream, relayed by the launcher or, on a terminal, written
into the sandbox's.
"""

from __future__ import annotations

import functools
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime

import docker

from . import docker_limits, framing, launch, procfs
from .docker_api import Failed, remove_container, translated, uncounted
from .executor import (
    COMPILE_GID,
    CompileResult,
    ExecutorError,
    ExitStatus,
    Limits,
    Output,
    RuntimeUnavailable,
    Sandbox,
    SandboxRef,
    Started,
    Stream,
    Terminal,
)

log = logging.getLogger(__name__)

# How long a started tty sandbox may take to put its terminal in raw mode.
READY_TIMEOUT = 10.0
# After the launcher's EXIT mark on stdout, how long stderr (a stream of its own, which Docker
# copies apart from stdout) may stay quiet before it is taken to be complete: the program wrote
# it before it ended, so it is in flight already, not still to come.
SETTLE = 0.005


class DockerSandbox(Sandbox):
    """A claimed container and its hijacked attach connection, framed as Docker multiplexes it
    (or raw, for a tty), with the launcher's mark taken out of the stream; and, with a compile
    stage, the compiler's process and its connection."""

    def __init__(
        self,
        api: docker.APIClient,
        ref: SandboxRef,
        session_id: str,
        starts: threading.BoundedSemaphore | None = None,
        remove: Callable[[], None] | None = None,
        fixed_limits: bool = False,
        failed: Failed = uncounted,
    ) -> None:
        self.api = api
        # Docker's failures, translated and counted (see docker_api.translated).
        self._failed = failed
        self._translated = functools.partial(translated, failed=failed)
        # By id: the container's name changes as it is claimed, its id never.
        self.container = ref.id
        self.session_id = session_id
        self.tty = ref.tty
        self.compiles = ref.compiles
        self._compile = ref.compile
        # Started ahead, waiting for the launcher's relay (see launch.compile_waiter): its nonce.
        self._compile_nonce = ref.compile_nonce
        self._uid = ref.uid
        # Its launcher's END mark completes a single run's stderr: no quiet moment is waited for.
        self._ends_stderr = ref.ends_stderr
        # The launcher's marks carry it; made for this start, it reaches the launcher in the
        # header only (see launch).
        self._nonce = launch.new_nonce()
        self._running = ref.running
        self._starts = starts or threading.BoundedSemaphore(1)
        # The executor's removal: the container, then what it held (its uid).
        self._remove = remove or (lambda: remove_container(self.api, self.container, failed))
        # Created under the run's limits, which the runtime cannot change (runsc): nothing to lower.
        self._fixed_limits = fixed_limits
        self._early = b""
        self._stderr_ends = False
        # A program that runs once, and whether its stdout and stderr are one stream (see output).
        self._once = True
        self._one_stream = self.tty
        self._settling = False
        self._terminal: Terminal | None = None
        self._sock: socket.socket | None = None
        # The compile stage's connection while it runs.
        self._compile_sock: socket.socket | None = None
        self._write_lock = threading.Lock()
        self._closed = False
        self._attached_at = float("inf")
        # Its first process's host pid, once asked (see waiting_for_input): 0 if none was told.
        self._pid: int | None = None

    def start(
        self,
        code: bytes,
        terminal: Terminal | None = None,
        merge_stderr: bool = False,
        files: Sequence[tuple[str, bytes]] = (),
        tests: bool = False,
    ) -> None:
        self._attached_at = time.time()
        with self._translated("attach to the sandbox"):
            attached = self.api.attach_socket(
                self.container, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
            )
        # docker-py hands back a SocketIO wrapper; the socket beneath is what we must read,
        # write, half-close and finally shut down.
        self._sock = getattr(attached, "_sock", attached)
        if not self._running:
            # Attached first, started second: nothing the program writes can be missed.
            with self._starts, self._translated("start the sandbox"):
                self.api.start(self.container)
            if self.tty:
                self._wait_until_ready()
        self._terminal = terminal
        # Each test's stderr ends with a mark of its own where stderr is a stream of its own; so
        # does a single run's, with the Python and fork launchers (see launch's END).
        self._stderr_ends = not self.tty and not merge_stderr
        self._once = not tests
        self._one_stream = self.tty or merge_stderr
        header = launch.header(code, terminal, self._nonce, merge_stderr, files, tests)
        # The relay's line goes with it: the compile stage starts as soon as the code is in place.
        self.write(header + launch.RELAY if self._compile_nonce else header)

    def test(self, stdin: bytes, timeout_ms: int, args: Sequence[str] = ()) -> None:
        self.write(launch.test_frame(stdin, timeout_ms, args))

    def abort(self) -> None:
        self.signal(launch.ABORT_SIGNAL)

    def _wait_until_ready(self) -> None:
        """A tty launcher says when its terminal is raw; what it wrote before is no one's output."""
        assert self._sock is not None
        # A launcher that ended first: its end is read from the stream as any other.
        self._early = wait_until_ready(self._sock) or b""

    def output(self) -> Iterator[Output]:
        items = self._raw() if self.tty else framing.demultiplex(self._chunks(self._sock))
        items = framing.take_marks(items, self._nonce, launch.marks_expected(self.tty, self.compiles))
        items = framing.take_ends(items, self._nonce, self._stderr_ends)
        if self._once:
            # Complete at its marks; under se-run a separate stderr once it stayed quiet for SETTLE.
            # With an END mark to come no pause ends it: under load Docker's copy of a backlog of
            # stderr pauses for longer than SETTLE (it cut stderr short under CI).
            settle = None if self._ends_stderr else self._settle
            items = framing.single_run(items, self._one_stream, settle)
        for item in items:
            if not isinstance(item, Started):
                yield item
                continue
            # The source is in place and the launcher waits for the go: the compile stage's turn.
            if self.tty:
                yield item
            if self._compile is None:
                continue
            if not self._fixed_limits:
                self._host_pid()  # asked while it compiles: set_limits writes into its cgroup
            if self._compile_nonce is not None:
                # Relayed on the launcher's stderr, or written into the sandbox's terminal.
                stream = Stream.STDOUT if self.tty else Stream.STDERR
                stage = framing.compile_stage(items, self._compile_nonce, stream)
            else:
                stage = self._compile_stage(self._compile)
            for part in stage:
                yield part
                if isinstance(part, CompileResult) and part.exit_code != 0:
                    # A failed compile stage ends the launcher with its code.
                    self.write(launch.halt(part.exit_code))

    def _compile_stage(self, command: tuple[str, ...]) -> Iterator[Output]:
        """Run the compiler beside the launcher, its output as the client's stderr (a tty's:
        stdout), then how it ended (see framing.compile_stage)."""
        if self._uid is None:
            raise ExecutorError("the sandbox has no uid of its own to compile as")
        with self._translated("start the compile stage"):
            exec_id, nonce = compile_exec(
                self.api, self.container, self._uid, launch.compile_command(command), self.tty
            )
            started = self.api.exec_start(exec_id, tty=self.tty, socket=True)
        if self.tty:
            # Its own terminal, as wide as the client's, for the compiler's diagnostics.
            size = self._terminal or Terminal()
            try:
                with self._translated("size the compiler's terminal"):
                    self.api.exec_resize(exec_id, height=size.rows, width=size.cols)
            except ExecutorError as exc:
                # A quick compiler may be done already; its output is what matters.
                log.debug("compile stage of %s not resized: %s", self.session_id, exc)
        sock = self._compile_sock = getattr(started, "_sock", started)
        # All its output is one stream (stderr, or a tty's), its EXIT mark last.
        if self.tty:
            items = ((Stream.STDOUT, data) for data in self._chunks(sock))
        else:
            items = framing.demultiplex(self._chunks(sock))
        try:
            yield from framing.compile_stage(items, nonce, Stream.STDOUT if self.tty else Stream.STDERR)
        finally:
            self._compile_sock = None
            sock.close()

    def _settle(self) -> None:
        """From now on a read that waits SETTLE for more ends the output (see output)."""
        assert self._sock is not None
        self._settling = True
        self._sock.settimeout(SETTLE)

    def _recv(self, sock: socket.socket | None) -> bytes:
        assert sock is not None, "start() first"
        try:
            return sock.recv(65536)
        except TimeoutError:
            if self._settling and sock is self._sock:
                return b""
            raise RuntimeUnavailable("the connection to Docker timed out") from None
        except OSError as exc:
            if self._closed:
                return b""
            raise RuntimeUnavailable("the connection to Docker broke") from exc

    def _raw(self) -> Iterator[tuple[Stream, bytes]]:
        """A tty's stream: one, not multiplexed."""
        if self._early:
            yield Stream.STDOUT, self._early
        for data in self._chunks(self._sock):
            yield Stream.STDOUT, data

    def _chunks(self, sock: socket.socket | None) -> Iterator[bytes]:
        while data := self._recv(sock):
            yield data

    def set_limits(self, limits: Limits) -> None:
        if not self._fixed_limits:
            docker_limits.set_limits(self.api, self.container, self._host_pid(), limits, self._failed)

    def go(self) -> None:
        self.write(launch.GO)

    def signal(self, name: str) -> None:
        with self._translated(f"send {name}", ignore=(404, 409), operation="send a signal"):
            self.api.kill(self.container, signal=name)

    def resize(self, cols: int, rows: int) -> None:
        with self._translated("resize the terminal", ignore=(404, 409)):
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
        with self._translated("kill the sandbox", ignore=(404, 409)):
            self.api.kill(self.container)

    def wait(self, timeout: float) -> ExitStatus:
        with self._translated("learn how the sandbox ended"):
            result = self.api.wait(self.container, timeout=timeout)
            state = self.api.inspect_container(self.container)["State"]
        # Docker's clock is this host's: a warm sandbox that had stopped before it was attached
        # to never ran the program.
        ended_before = self._running and finished_before(state, self._attached_at)
        return ExitStatus(result.get("StatusCode"), bool(state.get("OOMKilled")), ended_before)

    def waiting_for_input(self) -> bool:
        return waiting_on_stdin(self.api, self.container, self._translated, self._host_pid())

    def _host_pid(self) -> int:
        """Its first process's pid on the host, asked once (0: none told)."""
        if self._pid is None:
            self._pid = first_pid(self.api, self.container, self._translated) or 0
        return self._pid

    def remove(self) -> None:
        self._close_socket()
        self._remove()

    def _close_socket(self) -> None:
        self._closed = True
        for sock in (self._sock, self._compile_sock):
            if sock is not None:
                close_socket(sock)


def waiting_on_stdin(
    api: docker.APIClient, container: str, translated: Callable = translated, pid: int | None = None
) -> bool:
    """Whether the container's processes sleep waiting for its stdin: the host's pids of them,
    then the host's /proc (see procfs); False when that cannot be told (gVisor's own kernel).
    With the pid of its first process the pids come from its cgroup, with no call to Docker:
    `docker top` runs `ps` over the whole machine on each call."""
    pids = procfs.cgroup_pids(pid) if pid else None
    if pids is None:
        try:
            with translated("list the sandbox's processes"):
                top = api.top(container)
        except ExecutorError:
            return False
        titles = top.get("Titles") or []
        if "PID" not in titles:
            return False
        column = titles.index("PID")
        pids = [int(row[column]) for row in top.get("Processes") or []]
    return procfs.waiting_on_stdin(pids)


def compile_exec(
    api: docker.APIClient, container: str, uid: int, argv: list[str], tty: bool
) -> tuple[str, str]:
    """A compile stage's exec, created, not started, and the nonce of its EXIT mark: its own, so
    that nothing it runs learns the launcher's. It runs as the sandbox's uid in another group
    than the launcher's: see launch on who can forge what."""
    nonce = launch.new_nonce()
    created = api.exec_create(
        container,
        argv,
        stdin=False,
        tty=tty,
        user=f"{uid}:{COMPILE_GID}",
        environment={launch.ENV_NONCE: nonce},
    )
    return created["Id"], nonce


def first_pid(api: docker.APIClient, container: str, translated: Callable = translated) -> int | None:
    """The host's pid of the container's first process (docker-init), if it runs."""
    try:
        with translated("inspect the sandbox"):
            return api.inspect_container(container)["State"].get("Pid") or None
    except ExecutorError:
        return None


def finished_before(state: dict, moment: float) -> bool:
    """Whether a container (its inspected State) had stopped before `moment` (time.time())."""
    return not state.get("Running") and _timestamp(state.get("FinishedAt", "")) < moment


def _timestamp(rfc3339: str) -> float:
    """Docker's time (nanoseconds, Z) as seconds since the epoch; +inf if there is none."""
    found = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,6})?\d*Z$", rfc3339)
    if found is None or found.group(1).startswith("0001"):
        return float("inf")
    moment = datetime.fromisoformat(found.group(1) + (found.group(2) or "") + "+00:00")
    return moment.timestamp()


def close_socket(sock: socket.socket) -> None:
    # Shut the socket down both ways, not just close the wrapper: a half-open attach keeps the
    # daemon's copy loop alive and can stall a later kill for 30 s.
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def wait_until_ready(sock: socket.socket) -> bytes | None:
    """Read a tty launcher's stream until its READY mark (its terminal is raw): what followed
    it, or None if the stream ended first."""
    mark = launch.mark(launch.READY)
    sock.settimeout(READY_TIMEOUT)
    seen = b""
    try:
        while mark not in seen:
            data = sock.recv(4096)
            if not data:
                return None
            seen += data
    except TimeoutError as exc:
        raise ExecutorError("the sandbox's terminal did not get ready") from exc
    finally:
        sock.settimeout(None)
    return seen.partition(mark)[2]
