"""The batch driver over a scripted sandbox: stages, limits, and a sandbox that goes away."""

from __future__ import annotations

import queue
import threading

from sandbox_engine.batch import RunRequest, SourceFile, Status, TestCase
from sandbox_engine.batch_driver import Batch, Plan
from sandbox_engine.executor import (
    CompileResult,
    ExecutorError,
    ExitStatus,
    Limits,
    ProgramEnd,
    Sandbox,
    StderrEnd,
    Stream,
    Usage,
)

LIMITS = Limits(memory=256 << 20, cpus=0.5, pids=32, disk=64 << 20)
COMPILE = Limits(memory=1 << 30, cpus=1.0, pids=128, disk=64 << 20)
USED = Usage(1.0, 2.0, 3)
_GONE = object()


class ScriptedSandbox(Sandbox):
    """Each test() answers with the next script: a list of output items (or _GONE: the sandbox
    ends). Records limits, aborts and frames."""

    def __init__(self, scripts: list, compiles: bool = False, compile_result=None, oom: bool = False):
        self.session_id = "s"
        self.compiles = compiles
        self._scripts = list(scripts)
        self._items: queue.Queue = queue.Queue()
        self.frames: list[tuple[bytes, int, tuple]] = []
        self.limits: list[Limits] = []
        self.aborted = 0
        self.removed = threading.Event()
        self.oom = oom
        self.went = False
        if compiles:
            self._items.put((Stream.STDERR, b"warning: x\n"))
            self._items.put(compile_result or CompileResult(0, USED))

    def start(self, code, terminal=None, merge_stderr=False, files=(), tests=False):
        assert tests
        self.code, self.files = code, tuple(files)

    def output(self):
        while True:
            item = self._items.get(timeout=10)
            if item is _GONE:
                self.went = True
                return
            yield item

    def test(self, stdin, timeout_ms, args=()):
        self.frames.append((stdin, timeout_ms, tuple(args)))
        for item in self._scripts.pop(0):
            self._items.put(item)

    def abort(self):
        self.aborted += 1
        self._items.put(ProgramEnd(None, 12, USED, aborted=True))
        self._items.put(StderrEnd())

    def set_limits(self, limits):
        self.limits.append(limits)

    def go(self):
        pass

    def close_stdin(self):
        self._items.put(_GONE)

    def remove(self):
        self.removed.set()
        self._items.put(_GONE)

    def wait(self, timeout):
        if not self.went:
            raise ExecutorError("still running")
        return ExitStatus(137, oom_killed=self.oom)

    def signal(self, name):
        pass

    def resize(self, cols, rows):
        pass

    def write(self, data):
        pass

    def kill(self):
        pass


def plan(tests, output=100, memory=LIMITS.memory, compile_memory=None, budget=30.0, timeout=5.0) -> Plan:
    request = RunRequest("c", (SourceFile("", b"code"), SourceFile("a.txt", b"A")), args=("x",))
    return Plan(request, timeout, memory, output, 10.0, compile_memory, tuple(tests), budget)


def ended(code=0, signal=0, **flags):
    return [ProgramEnd(code, signal, USED, **flags), StderrEnd()]


def test_each_test_gets_its_frame_and_its_own_output_and_status():
    sandbox = ScriptedSandbox(
        [
            [(Stream.STDOUT, b"one\n"), (Stream.STDERR, b"e\n"), *ended()],
            [(Stream.STDOUT, b"two"), *ended(3)],
            ended(-1, 9, timed_out=True),
            ended(None, 9),
            ended(None, 11),
        ]
    )
    tests = [TestCase(str(i), stdin=f"in{i}".encode()) for i in range(5)]
    compile_stage, stages = Batch(sandbox, plan(tests), LIMITS).carry_out()
    assert compile_stage is None
    assert [(s.status, s.exit_code, s.signal) for s in stages] == [
        (Status.OK, 0, None),
        (Status.RUNTIME_ERROR, 3, None),
        (Status.TIMEOUT, -1, "SIGKILL"),
        (Status.MEMORY_LIMIT, None, "SIGKILL"),
        (Status.RUNTIME_ERROR, None, "SIGSEGV"),
    ]
    assert (stages[0].stdout, stages[0].stderr, stages[0].output) == (b"one\n", b"e\n", b"one\ne\n")
    assert [f[0] for f in sandbox.frames] == [b"in0", b"in1", b"in2", b"in3", b"in4"]
    assert all(f[2] == ("x",) and f[1] == 5000 for f in sandbox.frames)
    assert sandbox.files == (("a.txt", b"A"),)
    # The server's memory limit stands: nothing to lower, no Docker call for it.
    assert sandbox.limits == []


def test_output_past_the_limit_is_cut_and_the_test_aborted_once():
    sandbox = ScriptedSandbox(
        [[(Stream.STDOUT, b"x" * 60), (Stream.STDERR, b"y" * 60), (Stream.STDOUT, b"z")]]
    )
    _, [stage] = Batch(sandbox, plan([TestCase("1")], output=100), LIMITS).carry_out()
    assert stage.status is Status.OUTPUT_LIMIT and sandbox.aborted == 1
    assert (len(stage.stdout), len(stage.stderr)) == (60, 40)
    assert (stage.truncated_stdout, stage.truncated_stderr) == (True, True)


def test_a_compiled_program_compiles_under_lowered_limits_then_runs_under_the_runs():
    sandbox = ScriptedSandbox([ended()], compiles=True)
    batch = Batch(sandbox, plan([TestCase("1")], memory=64 << 20, compile_memory=512 << 20), LIMITS, COMPILE)
    compile_stage, [stage] = batch.carry_out()
    assert compile_stage.status is Status.OK and compile_stage.stderr == b"warning: x\n"
    assert compile_stage.usage == USED and stage.status is Status.OK
    assert [limits.memory for limits in sandbox.limits] == [512 << 20, 64 << 20]


def test_a_failed_compile_runs_no_test():
    sandbox = ScriptedSandbox([], compiles=True, compile_result=CompileResult(1, USED))
    compile_stage, stages = Batch(sandbox, plan([TestCase("1")]), LIMITS).carry_out()
    assert (compile_stage.status, compile_stage.exit_code, stages) == (Status.COMPILE_ERROR, 1, [])
    assert sandbox.frames == []


def test_a_sandbox_that_goes_says_why_and_the_tests_after_it_do_not_run():
    sandbox = ScriptedSandbox([[(Stream.STDOUT, b"part"), _GONE]], oom=True)
    _, stages = Batch(sandbox, plan([TestCase("1"), TestCase("2")]), LIMITS).carry_out()
    assert (stages[0].status, stages[0].stdout) == (Status.MEMORY_LIMIT, b"part")
    assert stages[1].status is Status.INTERNAL_ERROR and "earlier test" in stages[1].message
    assert len(sandbox.frames) == 1


def test_past_the_shared_run_time_the_sandbox_is_removed_and_the_rest_time_out(monkeypatch):
    import sandbox_engine.batch_driver as driver

    monkeypatch.setattr(driver, "BATCH_GRACE", 0.0)
    sandbox = ScriptedSandbox([[(Stream.STDOUT, b"slow")]])
    _, stages = Batch(sandbox, plan([TestCase("1"), TestCase("2")], budget=0.2), LIMITS).carry_out()
    assert sandbox.removed.is_set()
    assert stages[0].status is Status.TIMEOUT and stages[0].stdout == b"slow"
    assert stages[1].status is Status.TIMEOUT and "used up" in stages[1].message
