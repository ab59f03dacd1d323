"""Batch runs: a request carried out on the same sandboxes, pool, limits and records as sessions.

A run is a session no client attaches to: admitted against the same capacity, given a sandbox
the same way (warm or created), recorded the same way, found by the same reaper if its worker
dies. The difference is the launcher's TESTS mode: the program is compiled once, then run as a
fresh process per test case with that case's stdin, each run ending with the launcher's EXIT mark,
which carries its exit status and what it used (see launch). `Runs` implements batch.Runner.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from dataclasses import replace

from .batch import (
    RunRequest,
    RunResult,
    RunState,
    RunView,
    Stage,
    Status,
    TestCase,
    TestResult,
    verdict,
)
from .batch_driver import Batch, Plan
from .engine import Engine
from .errors import EngineError, Kind
from .keys import Key
from .protocol import shown
from .specs import compile_limits, run_limits
from .states import Reason

log = logging.getLogger(__name__)

# What one request may carry.
MAX_TESTS = 64
MAX_FILES = 32
MAX_ARGS = 64
MAX_ARG_BYTES = 4096
# Every test's stdin and expected output together.
MAX_TEST_BYTES = 8 << 20


class Runs:
    """The batch runs of one worker (batch.Runner)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.records = engine.records
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    # --- batch.Runner --------------------------------------------------------------------
    def run(self, request: RunRequest, key: Key | None = None) -> RunResult:
        plan = self.plan(request)
        run_id = self._admit(plan, key)
        return self._carry_out(run_id, plan)

    def submit(self, request: RunRequest, key: Key | None = None) -> str:
        plan = self.plan(request)
        run_id = self._admit(plan, key)
        self.records.write_request(run_id, request)
        thread = threading.Thread(
            target=self._in_background, args=(run_id, plan), name=f"se-batch-{run_id}", daemon=True
        )
        with self._lock:
            self._threads[run_id] = thread
        thread.start()
        return run_id

    def get(self, run_id: str, key: Key | None = None) -> RunView:
        record = self.records.read(run_id) if _is_id(run_id) else None
        # Another key's run is no run at all to this one.
        if record is None or not record.batch or record.key != (key.name if key is not None else None):
            raise EngineError(Kind.NOT_FOUND, f"no run {shown(run_id)}")
        stored = self.records.read_result(run_id)
        base = RunView(
            run_id,
            RunState.QUEUED,
            record.language,
            record.created_at,
            finished_at=record.ended_at,
            request=self.records.read_request(run_id),
        )
        if stored is not None and record.final:
            # Finished once its end is recorded too (written after its result): a reader between
            # the two would see it finished with no finish time.
            return replace(base, state=RunState.FINISHED, **stored)
        if record.final:
            # Ended without a result: its worker died, or the reaper ended it.
            reason = record.reason or Reason.INTERNAL_ERROR
            return replace(
                base, state=RunState.FINISHED, error=("internal_error", f"the run ended: {reason}")
            )
        return replace(base, state=RunState.RUNNING if record.started_at else RunState.QUEUED)

    def wait(self, run_id: str, timeout: float, key: Key | None = None) -> RunView:
        deadline = time.monotonic() + timeout
        self.get(run_id, key)  # another key's run is not waited for
        with self._lock:
            thread = self._threads.get(run_id)
        if thread is not None:
            # Run by this worker: its thread's end is the run's.
            thread.join(timeout)
        pause = 0.01
        while (view := self.get(run_id, key)).state is not RunState.FINISHED and time.monotonic() < deadline:
            # Run by another worker: its record tells.
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 2, 0.2)
        return view

    def version(self, language: str) -> str:
        return self.engine.catalog.versions()[language]

    def shutdown(self, timeout: float) -> None:
        """Wait for this worker's background runs (their sandboxes are ended by the engine's)
        and removals."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.engine.removals.flush(max(0.0, deadline - time.monotonic()))

    # --- admission -----------------------------------------------------------------------
    def plan(self, request: RunRequest) -> Plan:
        """The request under this server's limits, or EngineError saying what is wrong with it."""
        c = self.engine.config
        spec = self.engine.languages.get(request.language)
        if spec is None:
            known = ", ".join(sorted(self.engine.languages))
            raise EngineError(
                Kind.UNKNOWN_LANGUAGE, f"unknown language {shown(request.language)}; known: {known}"
            )
        _check_files(request, c.max_code_size)
        tests = request.tests if request.tests is not None else (TestCase("run", request.stdin),)
        if request.tests is not None and not request.tests:
            raise EngineError(Kind.INVALID_REQUEST, "'tests' is empty")
        if len(tests) > MAX_TESTS:
            raise EngineError(Kind.INVALID_REQUEST, f"{len(tests)} tests; at most {MAX_TESTS} per request")
        if len({test.id for test in tests}) != len(tests):
            raise EngineError(Kind.INVALID_REQUEST, "every test needs an id of its own")
        given = sum(len(t.stdin) + len(t.expected_output or b"") for t in tests)
        if given > MAX_TEST_BYTES:
            raise EngineError(Kind.TOO_LARGE, f"stdin and expected output are over {MAX_TEST_BYTES} bytes")
        if len(request.args) > MAX_ARGS or any(len(a.encode()) > MAX_ARG_BYTES for a in request.args):
            raise EngineError(
                Kind.INVALID_REQUEST, f"at most {MAX_ARGS} args of at most {MAX_ARG_BYTES} bytes each"
            )
        if any("\x00" in arg for arg in request.args):
            raise EngineError(Kind.INVALID_REQUEST, "args must not contain NUL characters")
        lim = request.limits
        compile_memory = _capped("compileMemoryBytes", lim.compile_memory_bytes, c.compile_memory)
        return Plan(
            request=request,
            timeout=_capped("timeoutMs", lim.timeout_ms, c.run_timeout * 1000) / 1000,
            memory=_capped("memoryBytes", lim.memory_bytes, c.memory),
            output=_capped("outputBytes", lim.output_bytes, c.output_limit),
            compile_timeout=_capped("compileTimeoutMs", lim.compile_timeout_ms, c.compile_timeout * 1000)
            / 1000,
            compile_memory=compile_memory if lim.compile_memory_bytes is not None else None,
            tests=tests,
            budget=c.run_timeout,
        )

    def _admit(self, plan: Plan, key: Key | None) -> str:
        request = plan.request
        return self.engine.create_session(request.language, request.files[0].content, batch=True, key=key)

    # --- carrying out ----------------------------------------------------------------------
    def _in_background(self, run_id: str, plan: Plan) -> None:
        try:
            self._carry_out(run_id, plan)
        except EngineError as exc:
            self.records.write_result(run_id, {"error": (exc.kind.code, exc.message)})
        except Exception:
            log.exception("batch run %s failed", run_id)
            self.records.write_result(run_id, {"error": ("internal_error", "internal error")})
        finally:
            with self._lock:
                self._threads.pop(run_id, None)

    def _carry_out(self, run_id: str, plan: Plan) -> RunResult:
        request, c = plan.request, self.engine.config
        result: RunResult | None = None
        try:
            with self.engine.batch_sandbox(run_id) as sandbox:
                try:
                    compile_stage, stages = Batch(sandbox, plan, run_limits(c), compile_limits(c)).carry_out()
                finally:
                    # After the answer, off its client's path (Docker's removal takes a hundred
                    # milliseconds and more), once quiet, as a session's (see Engine.remove_later).
                    self.engine.remove_later(sandbox)
                result = _result(request, self.version(request.language), plan, compile_stage, stages)
                reason = (
                    Reason.COMPILE_ERROR
                    if compile_stage and compile_stage.status is not Status.OK
                    else Reason.EXITED
                )
                self.records.write_result(run_id, {"result": result})
                # Its end recorded while this worker still holds the sandbox: a reaper pass after
                # would take a claimed sandbox that no run holds for a leftover, and end the run
                # internal_error first.
                self.records.finish(run_id, reason, **result.ending())
                return result
        finally:
            if result is None:
                self.records.finish(run_id, Reason.INTERNAL_ERROR)


def _result(
    request: RunRequest, version: str, plan: Plan, compile_stage: Stage | None, stages: list[Stage]
) -> RunResult:
    if request.tests is None:
        return RunResult(request.language, version, compile_stage, stages[0] if stages else None)
    tests = tuple(
        TestResult(test.id, stage, verdict(stage, test.expected_output, request.compare))
        for test, stage in zip(plan.tests, stages, strict=False)
    )
    return RunResult(request.language, version, compile_stage, None, tests)


def _capped(name: str, asked: float | None, server: float) -> int:
    if asked is None:
        return int(server)
    if isinstance(asked, bool) or not isinstance(asked, int) or asked <= 0:
        raise EngineError(Kind.INVALID_REQUEST, f"limits.{name} must be a positive integer")
    if asked > server:
        raise EngineError(
            Kind.INVALID_REQUEST, f"limits.{name} {asked} is above this server's limit of {int(server)}"
        )
    return asked


def _check_files(request: RunRequest, max_size: int) -> None:
    if not request.files:
        raise EngineError(Kind.INVALID_REQUEST, "a run needs code: 'code' or at least one file")
    if len(request.files) > MAX_FILES:
        raise EngineError(Kind.INVALID_REQUEST, f"{len(request.files)} files; at most {MAX_FILES}")
    if sum(len(f.content) for f in request.files) > max_size:
        raise EngineError(Kind.TOO_LARGE, f"the files are over the limit of {max_size} bytes")
    if not request.files[0].content.strip():
        raise EngineError(Kind.INVALID_REQUEST, "the entry file is empty")
    names = set()
    for f in request.files[1:]:
        if not _FILE_NAME.fullmatch(f.name) or ".." in f.name.split("/") or len(f.name) > 255:
            raise EngineError(
                Kind.INVALID_REQUEST,
                f"file name {shown(f.name)}: use a relative path of letters, digits, '.', '_', '-' and '/'",
            )
        if f.name in names:
            raise EngineError(Kind.INVALID_REQUEST, f"file {shown(f.name)} is given twice")
        names.add(f.name)


_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*){0,7}")


def _is_id(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False
