"""One batch run's sandbox, driven in one thread: the compile stage, then each test as a fresh
process (the launcher's TESTS mode), each stage's output collected under the output limit, its
end and usage read from the launcher's marks, and deadlines that nothing outlives."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from .batch import RunRequest, Stage, Status, TestCase
from .executor import CompileResult, ExecutorError, Limits, ProgramEnd, Sandbox, StderrEnd, Stream, Usage
from .protocol import utf8_prefix

log = logging.getLogger(__name__)

# How long past its last deadline a batch waits for its sandbox before giving it up.
BATCH_GRACE = 10.0
# How long a sandbox that ended under a batch may take to say how.
EXIT_WAIT = 5.0


@dataclass(frozen=True)
class Plan:
    """A validated request under this server's limits."""

    request: RunRequest
    timeout: float
    memory: int
    output: int
    compile_timeout: float
    compile_memory: int | None
    tests: tuple[TestCase, ...]
    # The time all the tests share: the server's run timeout.
    budget: float


class Batch:
    """One request's sandbox driven through its compile stage and its tests, in this thread."""

    def __init__(
        self, sandbox: Sandbox, plan: Plan, server_limits: Limits, compile_limits: Limits | None = None
    ) -> None:
        self.sandbox = sandbox
        self.plan = plan
        self.limits = replace(server_limits, memory=plan.memory)
        # The compile stage's, lowered when the request asks.
        self._compile_limits = (
            replace(compile_limits, memory=plan.compile_memory)
            if compile_limits is not None and plan.compile_memory is not None
            else None
        )
        self._lowered = plan.memory < server_limits.memory
        # The tests' shared time (the server's run timeout), counted from the program's go.
        self._run_deadline = float("inf")
        # Past its deadline (the compile's, then the run's plus a grace) the sandbox is removed,
        # which ends its output: nothing waits longer.
        self._watch = Deadline(self._give_up, f"se-batchwatch-{sandbox.session_id}")
        self._cut_off = False
        # The sandbox ended under a test: the tests after it cannot run.
        self._gone = False

    def carry_out(self) -> tuple[Stage | None, list[Stage]]:
        request = self.plan.request
        files = [(f.name, f.content) for f in request.files[1:]]
        try:
            if self.sandbox.compiles:
                self._watch.set(time.monotonic() + self.plan.compile_timeout)
                if self._compile_limits is not None:
                    self.sandbox.set_limits(self._compile_limits)
            else:
                self._begin_running()
                if self._lowered:
                    self.sandbox.set_limits(self.limits)
            self.sandbox.start(request.files[0].content, None, request.merge_stderr, files, tests=True)
            output = self.sandbox.output()
            compile_stage = self._compile(output) if self.sandbox.compiles else None
            if compile_stage is not None and compile_stage.status is not Status.OK:
                return compile_stage, []
            # The last test's end is the batch's: the sandbox is removed without waiting for its
            # launcher to exit.
            return compile_stage, [self._test(output, test) for test in self.plan.tests]
        finally:
            self._watch.stop()

    def _begin_running(self) -> None:
        self._run_deadline = time.monotonic() + self.plan.budget
        self._watch.set(self._run_deadline + BATCH_GRACE)

    def _give_up(self) -> None:
        self._cut_off = True
        log.info("batch %s passed its deadline; removing its sandbox", self.sandbox.session_id)
        try:
            self.sandbox.remove()
        except ExecutorError as exc:
            log.warning("could not remove the sandbox of %s: %s", self.sandbox.session_id, exc)

    def _compile(self, output: Iterator) -> Stage:
        collected = _Collected(self.plan.output)
        started = time.monotonic()
        for item in output:
            if isinstance(item, CompileResult):
                wall = (time.monotonic() - started) * 1000
                usage = item.usage or Usage(0.0, wall, 0)
                if self._cut_off:
                    return collected.stage(
                        Status.TIMEOUT, None, None, usage, "the compile timeout was reached"
                    )
                if item.exit_code != 0:
                    return collected.stage(Status.COMPILE_ERROR, item.exit_code, None, usage)
                self.sandbox.set_limits(self.limits)
                self._begin_running()
                self.sandbox.go()
                return collected.stage(Status.OK, 0, None, usage)
            if isinstance(item, tuple):
                collected.add(*item)
        if self._cut_off:
            return collected.stage(Status.TIMEOUT, None, None, None, "the compile timeout was reached")
        why = "the sandbox ended during the compile stage"
        return collected.stage(Status.INTERNAL_ERROR, None, None, None, why)

    def _test(self, output: Iterator, test: TestCase) -> Stage:
        remaining = self._run_deadline - time.monotonic()
        if self._cut_off or remaining <= 0:
            return Stage(Status.TIMEOUT, message="the run's time was used up by earlier tests")
        if self._gone:
            return Stage(Status.INTERNAL_ERROR, message="the sandbox ended in an earlier test")
        timeout = min(self.plan.timeout, remaining)
        self.sandbox.test(test.stdin, max(1, int(timeout * 1000)), self.plan.request.args)
        collected = _Collected(self.plan.output)
        end: ProgramEnd | None = None
        stderr_done = not self._stderr_ends()
        for item in output:
            if isinstance(item, ProgramEnd):
                end = item
            elif isinstance(item, StderrEnd):
                stderr_done = True
            elif isinstance(item, tuple):
                if collected.add(*item) and not collected.aborted:
                    collected.aborted = True
                    self.sandbox.abort()
            if end is not None and stderr_done:
                return _stage(collected, end)
        self._gone = True
        if self._cut_off:
            return collected.stage(Status.TIMEOUT, None, None, None, "its time was up")
        if self._out_of_memory():
            # The whole sandbox went (gVisor's kernel is one process to the host's OOM killer).
            return collected.stage(Status.MEMORY_LIMIT, None, "SIGKILL", None, "the memory limit was reached")
        return collected.stage(Status.INTERNAL_ERROR, None, None, None, "the sandbox ended")

    def _out_of_memory(self) -> bool:
        try:
            return self.sandbox.wait(EXIT_WAIT).oom_killed
        except ExecutorError:
            return False

    def _stderr_ends(self) -> bool:
        return not self.sandbox.tty and not self.plan.request.merge_stderr


class Deadline:
    """Calls `expire` once, from a thread of its own, when the deadline (which may move) passes."""

    def __init__(self, expire: Callable[[], None], name: str) -> None:
        self._expire = expire
        self._deadline = float("inf")
        self._changed = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._wait, name=name, daemon=True)
        self._thread.start()

    def set(self, deadline: float) -> None:
        self._deadline = deadline
        self._changed.set()

    def stop(self) -> None:
        self._stopped = True
        self._changed.set()
        self._thread.join()

    def _wait(self) -> None:
        while not self._stopped:
            left = self._deadline - time.monotonic()
            if left <= 0:
                self._expire()
                return
            self._changed.wait(None if left == float("inf") else left)
            self._changed.clear()


class _Collected:
    """One stage's output, cut at the output limit (stdout and stderr together)."""

    def __init__(self, limit: int) -> None:
        self.remaining = limit
        self.parts: dict[Stream, list[bytes]] = {Stream.STDOUT: [], Stream.STDERR: []}
        self.both: list[bytes] = []
        self.truncated = {Stream.STDOUT: False, Stream.STDERR: False}
        self.aborted = False

    def add(self, stream: Stream, data: bytes) -> bool:
        """Keep what fits; whether the limit was passed."""
        if len(data) > self.remaining:
            self.truncated[stream] = True
            data = utf8_prefix(data, self.remaining)
        self.remaining -= len(data)
        if data:
            self.parts[stream].append(data)
            self.both.append(data)
        return any(self.truncated.values())

    def stage(
        self,
        status: Status,
        exit_code: int | None,
        signal: str | None,
        usage: Usage | None,
        message: str | None = None,
    ) -> Stage:
        return Stage(
            status=status,
            exit_code=exit_code,
            signal=signal,
            stdout=b"".join(self.parts[Stream.STDOUT]),
            stderr=b"".join(self.parts[Stream.STDERR]),
            output=b"".join(self.both),
            truncated_stdout=self.truncated[Stream.STDOUT],
            truncated_stderr=self.truncated[Stream.STDERR],
            usage=usage,
            message=message,
        )


def _stage(collected: _Collected, end: ProgramEnd) -> Stage:
    signal = _signal_name(end.signal)
    if collected.aborted:
        status, message = Status.OUTPUT_LIMIT, "the output limit was reached"
    elif end.timed_out:
        status, message = Status.TIMEOUT, "the time limit was reached"
    elif end.signal == 9:
        # Inside a sandbox nothing but the kernel's OOM killer sends a program SIGKILL, unless
        # the program does so itself: that one reads as a memory limit too.
        status, message = Status.MEMORY_LIMIT, "the memory limit was reached"
    elif end.exit_code == 0:
        status, message = Status.OK, None
    else:
        status, message = Status.RUNTIME_ERROR, None
    return collected.stage(status, end.exit_code, signal, end.usage, message)


def _signal_name(number: int) -> str | None:
    if not number:
        return None
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"
