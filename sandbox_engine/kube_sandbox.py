"""One claimed pod as a Sandbox: its pods/attach connection, and its controls over pods/exec.

The pod runs from its creation and its launcher waits on stdin, so the attachment misses nothing
of a plain sandbox's; a tty launcher's READY mark comes before anyone attached, so it is read from
the pod's log. Attach carries stdout and stderr on channels of their own (one, with a tty), which
`framing` parses for the launcher's marks as it does Docker's streams.

The compile stage and signals are pods/exec beside the launcher: Kubernetes runs them as the pod's
user, in its group (it cannot run them as another), so the compile stage is not the other
principal it is under Docker (see launch): its code could reach the launcher's stdin and forge the
marks, which only tells lies about its own run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence

import kubernetes.client

from . import framing, kube_api, launch
from .executor import (
    CompileResult,
    ExecutorError,
    ExitStatus,
    Limits,
    Output,
    Sandbox,
    SandboxRef,
    Started,
    Stream,
    Terminal,
)
from .kube_api import STDERR, STDIN, Channels, status_of, translated

log = logging.getLogger(__name__)

# How long a pod may take to run (its image pulled, its node found), and its tty to get raw.
START_TIMEOUT = 120.0
# The status of a pod that was killed (deleted at once): SIGKILL's, as Docker's kill gives.
KILLED = 137
CONTAINER = "sandbox"


class KubeSandbox(Sandbox):
    def __init__(
        self,
        api: kubernetes.client.CoreV1Api,
        config: kubernetes.client.Configuration,
        namespace: str,
        ref: SandboxRef,
        session_id: str,
    ) -> None:
        self.api = api
        self.config = config
        self.namespace = namespace
        self.pod = ref.id
        self.session_id = session_id
        self.tty = ref.tty
        self.compiles = ref.compiles
        self._compile = ref.compile
        self._nonce = launch.new_nonce()
        self._stderr_ends = False
        self._once = True
        self._one_stream = self.tty
        self._terminal: Terminal | None = None
        self._channels: Channels | None = None
        self._compile_channels: Channels | None = None
        self._killed = False
        self._closed = False
        # Seen running as it was claimed: nothing to wait for before the attach.
        self._seen_running = ref.running

    def start(
        self,
        code: bytes,
        terminal: Terminal | None = None,
        merge_stderr: bool = False,
        files: Sequence[tuple[str, bytes]] = (),
        tests: bool = False,
    ) -> None:
        if not self._seen_running:
            self._wait_until(self._running, "run")
        if self.tty:
            # Written before anyone attached; until it is, the terminal would echo the header.
            self._wait_until(self._ready, "get its terminal ready")
        self._channels = kube_api.connect(
            self.config,
            "attach",
            self.pod,
            self.namespace,
            container=CONTAINER,
            stdin=True,
            stdout=True,
            stderr=not self.tty,
            tty=self.tty,
        )
        self._terminal = terminal
        # With a separate stderr, each test's ends with an END mark, and a single run's too with
        # the Python and fork launchers (see launch's END): read, and for a single run dropped.
        self._stderr_ends = not self.tty and not merge_stderr
        self._once = not tests
        self._one_stream = self.tty or merge_stderr
        self.write(launch.header(code, terminal, self._nonce, merge_stderr, files, tests))

    def _wait_until(self, done, doing: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        pause = 0.02
        while not done():
            if time.monotonic() > deadline:
                raise ExecutorError(f"the sandbox's pod did not {doing} within {START_TIMEOUT:.0f} s")
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _read(self):
        with translated("read the sandbox's pod"):
            return self.api.read_namespaced_pod(self.pod, self.namespace)

    def _running(self) -> bool:
        pod = self._read()
        phase = pod.status.phase if pod.status else None
        if phase in ("Succeeded", "Failed"):
            raise ExecutorError(f"the sandbox's pod ended before its program came ({phase})")
        for status in (pod.status.container_statuses or []) if pod.status else []:
            waiting = status.state.waiting if status.state else None
            if waiting is not None and waiting.reason in (
                "ErrImagePull",
                "ImagePullBackOff",
                "InvalidImageName",
            ):
                raise ExecutorError(
                    f"the node cannot pull the sandbox's image: {waiting.message or waiting.reason}"
                )
        return phase == "Running"

    def _ready(self) -> bool:
        with translated("read the sandbox's log"):
            log_text = self.api.read_namespaced_pod_log(self.pod, self.namespace, container=CONTAINER)
        return launch.mark(launch.READY).decode().rstrip("\n") in (log_text or "")

    def test(self, stdin: bytes, timeout_ms: int, args: Sequence[str] = ()) -> None:
        self.write(launch.test_frame(stdin, timeout_ms, args))

    def abort(self) -> None:
        self.signal(launch.ABORT_SIGNAL)

    def output(self) -> Iterator[Output]:
        assert self._channels is not None, "start() first"
        items = self._streams(self._channels)
        items = framing.take_marks(items, self._nonce, launch.marks_expected(self.tty, self.compiles))
        items = framing.take_ends(items, self._nonce, self._stderr_ends)
        if self._once:
            # Complete at its marks, as under Docker; under se-run a separate stderr at the end.
            items = framing.single_run(items, self._one_stream)
        for item in items:
            if not isinstance(item, Started):
                yield item
                continue
            if self.tty:
                yield item
            if self._compile is not None:
                yield from self._compile_stage(self._compile)

    def _streams(self, channels: Channels) -> Iterator[tuple[Stream, bytes]]:
        for channel, data in channels.frames():
            yield (Stream.STDERR if channel == STDERR and not self.tty else Stream.STDOUT), data

    def _exec(self, command: list[str], tty: bool = False) -> Channels:
        return kube_api.connect(
            self.config,
            "exec",
            self.pod,
            self.namespace,
            container=CONTAINER,
            command=command,
            stdin=False,
            stdout=True,
            stderr=not tty,
            tty=tty,
        )

    def _compile_stage(self, command: tuple[str, ...]) -> Iterator[Output]:
        """The compiler beside the launcher, over pods/exec; its output is the client's stderr (a
        tty's: stdout), then how it ended (see framing.compile_stage)."""
        nonce = launch.new_nonce()
        # pods/exec takes no environment: the nonce of its own EXIT mark goes through env(1).
        channels = self._compile_channels = self._exec(
            ["env", f"{launch.ENV_NONCE}={nonce}", *launch.compile_command(command)], tty=self.tty
        )
        if self.tty:
            size = self._terminal or Terminal()
            channels.resize(size.cols, size.rows)
        ended: CompileResult | None = None
        try:
            # All its output is one stream, its EXIT mark last.
            items = ((Stream.STDOUT, data) for _, data in channels.frames())
            for item in framing.compile_stage(items, nonce, Stream.STDOUT if self.tty else Stream.STDERR):
                if isinstance(item, CompileResult):
                    ended = item
                else:
                    yield item
        finally:
            self._compile_channels = None
            channels.close()
        assert ended is not None  # compile_stage ends with one
        yield ended
        if ended.exit_code != 0:
            self.write(launch.halt(ended.exit_code))

    def set_limits(self, limits: Limits) -> None:
        """Created under the run's limits (see kube_executor): nothing to lower."""

    def go(self) -> None:
        self.write(launch.GO)

    def signal(self, name: str) -> None:
        # Every process of the sandbox's user but the exec's own shell (kill -1 spares the caller
        # and PID 1), then PID 1, the launcher, which acts on the signals it handles: the program's
        # whole process group and more, as Docker's init passes them on.
        script = 'kill -s "$0" -- -1 2>/dev/null; kill -s "$0" 1 2>/dev/null; true'
        try:
            channels = self._exec(["/bin/sh", "-c", script, name.removeprefix("SIG")])
        except ExecutorError as exc:
            if status_of(exc) in (400, 404):
                return  # not running any more
            raise
        try:
            for _ in channels.frames():
                pass
        finally:
            channels.close()

    def resize(self, cols: int, rows: int) -> None:
        if self._channels is not None:
            self._channels.resize(cols, rows)

    def write(self, data: bytes) -> None:
        if self._channels is not None and not self._closed:
            self._channels.write(STDIN, data)

    def close_stdin(self) -> None:
        if self.tty:
            # A tty's EOF is the line discipline's ^D.
            self.write(b"\x04")
        elif self._channels is not None:
            self._channels.close_stdin()

    def kill(self) -> None:
        # No kill verb: the pod's deletion at once is SIGKILL to everything in it.
        self._killed = True
        with translated("kill the sandbox", ignore=(404,)):
            self.api.delete_namespaced_pod(self.pod, self.namespace, grace_period_seconds=0)

    def wait(self, timeout: float) -> ExitStatus:
        deadline = time.monotonic() + timeout
        pause = 0.02
        while True:
            try:
                pod = self._read()
            except ExecutorError as exc:
                if status_of(exc) == 404 and self._killed:
                    return ExitStatus(KILLED)
                raise
            status = _terminated(pod)
            if status is not None:
                return status
            if self._killed and pod.metadata.deletion_timestamp is not None:
                return ExitStatus(KILLED)
            if time.monotonic() > deadline:
                raise ExecutorError(f"the sandbox's pod did not end within {timeout:.0f} s")
            time.sleep(pause)
            pause = min(pause * 2, 0.25)

    def remove(self) -> None:
        self._closed = True
        for channels in (self._channels, self._compile_channels):
            if channels is not None:
                channels.close()
        with translated("remove the sandbox", ignore=(404,)):
            self.api.delete_namespaced_pod(self.pod, self.namespace, grace_period_seconds=0)


def _terminated(pod) -> ExitStatus | None:
    """How the pod's container ended, from its status; None while it runs."""
    for status in (pod.status.container_statuses or []) if pod.status else []:
        ended = status.state.terminated if status.state else None
        if ended is not None:
            return ExitStatus(ended.exit_code, oom_killed=ended.reason == "OOMKilled")
    return None
