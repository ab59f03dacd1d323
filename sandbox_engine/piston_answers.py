"""What Piston's clients are told: a RunResult as its /execute answer, and our session's
messages as its /connect messages. Pure functions.

Field names and units follow Piston's own source (api/src/job.js, api/src/api/v2.js): times in
milliseconds, memory in bytes, statuses as its isolate sandbox names them.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from .batch import RunResult, Stage, Status
from .piston_protocol import Runtime


def execute_answer(result: RunResult, runtime: Runtime) -> dict:
    """A batch run's result as Piston's /execute answer."""
    # Piston gives the compile stage as the run too when the program never ran.
    run = result.run or result.compile or Stage(Status.INTERNAL_ERROR, message="the program did not run")
    answer = {"language": runtime.language, "version": result.version, "run": stage_answer(run)}
    if result.compile is not None:
        answer["compile"] = stage_answer(result.compile)
    return answer


def stage_answer(stage: Stage) -> dict:
    """One stage as Piston reports it. Output that is not UTF-8 has U+FFFD in its place, as
    Piston's own (it turns the program's bytes into a JavaScript string)."""
    status, message, signal_name, code = _ending(stage)
    usage = stage.usage
    return {
        "stdout": stage.stdout.decode("utf-8", "replace"),
        "stderr": stage.stderr.decode("utf-8", "replace"),
        "code": code,
        "signal": signal_name,
        "output": stage.output.decode("utf-8", "replace"),
        "memory": usage.memory_peak_bytes if usage else None,
        "message": message,
        "status": status,
        "cpu_time": round(usage.cpu_time_ms, 3) if usage else None,
        "wall_time": round(usage.wall_time_ms, 3) if usage else None,
    }


def _ending(stage: Stage) -> tuple[str | None, str | None, str | None, int | None]:
    """(status, message, signal, code) as Piston's isolate reports them: TO for a timeout, OL and
    EL for too much stdout or stderr (each killed with SIGKILL), SG for a signal, RE for an exit
    status but 0, XX for a failure of the sandbox; none when the program exited with 0."""
    code = None if stage.signal else stage.exit_code
    if stage.status is Status.INTERNAL_ERROR:
        return "XX", stage.message or "internal error", stage.signal, code
    if stage.status is Status.TIMEOUT:
        return "TO", stage.message or "Time limit exceeded", "SIGKILL", None
    if stage.status is Status.OUTPUT_LIMIT:
        if stage.truncated_stderr and not stage.truncated_stdout:
            return "EL", "stderr length exceeded", "SIGKILL", None
        return "OL", "stdout length exceeded", "SIGKILL", None
    if stage.status is Status.MEMORY_LIMIT:
        return "SG", stage.message or "Memory limit exceeded", stage.signal or "SIGKILL", None
    if stage.signal:
        number = getattr(signal.Signals, stage.signal, None)
        caught = f"Caught fatal signal {int(number)}" if number is not None else f"Caught {stage.signal}"
        return "SG", caught, stage.signal, None
    if code:
        return "RE", f"Exited with error status {code}", None, code
    return None, None, None, code


class ConnectStages:
    """Our session's messages as Piston's /connect ones (stage, data, exit), and the deadlines of
    the timeouts a client asked for, which are the stage's own in Piston."""

    def __init__(
        self,
        run_timeout: int | None = None,
        compile_timeout: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stage: str | None = None
        self._since = 0.0
        self._timeouts = {"run": run_timeout, "compile": compile_timeout}
        self._clock = clock

    def translate(self, message: dict) -> list[dict]:
        kind = message.get("type")
        if kind in ("stdout", "stderr"):
            return [{"type": "data", "stream": kind, "data": message["data"]}]
        if kind != "state":
            return []
        state = message["state"]
        if state == "COMPILING":
            return [self._enter("compile")]
        if state == "RUNNING":
            # Our compile stage ends by starting the program; Piston says the compiler exited 0.
            done = [self._exit("compile", 0, None)] if self.stage == "compile" else []
            return [*done, self._enter("run")]
        if state in ("FINISHED", "TERMINATED"):
            compiling = self.stage == "compile" or message.get("reason") == "compile_error"
            stage = "compile" if compiling else "run"
            return [self._exit(stage, message.get("exitCode"), message.get("signal"))]
        return []

    def _enter(self, stage: str) -> dict:
        self.stage, self._since = stage, self._clock()
        return {"type": "stage", "stage": stage}

    @staticmethod
    def _exit(stage: str, code: int | None, signal_name: str | None) -> dict:
        # Piston's code is null when a signal ended the program.
        return {"type": "exit", "stage": stage, "code": None if signal_name else code, "signal": signal_name}

    def expired(self) -> bool:
        """Whether the current stage has run past the timeout the client asked for."""
        limit = self._timeouts.get(self.stage or "")
        return limit is not None and self._clock() >= self._since + limit / 1000

    def wait(self) -> float | None:
        """How long to wait for a client message before looking at expired() again; None: no
        deadline. While compiling, never past the earliest the run's could fall (a run that
        started now), so that a run with a short timeout after a long compile is not missed."""
        now = self._clock()
        deadlines = []
        if self.stage is not None and self._timeouts.get(self.stage) is not None:
            deadlines.append(self._since + self._timeouts[self.stage] / 1000)
        if self.stage == "compile" and self._timeouts["run"] is not None:
            deadlines.append(now + self._timeouts["run"] / 1000)
        return max(0.0, min(deadlines) - now) if deadlines else None
