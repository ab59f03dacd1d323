"""Batch runs in our own terms: what a request asks for and what its result says.

Pure data, shared by every API that runs code in one request (ours, POST /run; Piston's and
Judge0's, which translate their requests into a RunRequest and a RunResult into their answers),
and by `runs`, which carries them out. No Flask, no executor here.
"""

from __future__ import annotations

import base64
import enum
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Protocol

# The model's usage figures are the executor's own, re-exported for the APIs.
from .executor import Usage as Usage

if TYPE_CHECKING:
    from .keys import Key


class Status(enum.StrEnum):
    """How a stage (the compile, the run, or one test case) ended."""

    OK = "ok"
    RUNTIME_ERROR = "runtime_error"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    COMPILE_ERROR = "compile_error"
    INTERNAL_ERROR = "internal_error"


class Verdict(enum.StrEnum):
    """A test case's verdict: its output against the expected one, or why it has none."""

    ACCEPTED = "accepted"
    WRONG_ANSWER = "wrong_answer"
    RUNTIME_ERROR = "runtime_error"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    COMPILE_ERROR = "compile_error"
    INTERNAL_ERROR = "internal_error"


class Compare(enum.StrEnum):
    EXACT = "exact"
    # Trailing whitespace of each line and trailing empty lines do not count.
    TRIM = "trim"


class RunState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(frozen=True)
class SourceFile:
    name: str
    content: bytes


@dataclass(frozen=True)
class TestCase:
    __test__ = False  # not a test of pytest's, whatever its name says
    id: str
    stdin: bytes = b""
    # None: run it, judge nothing (verdict accepted when it ran ok).
    expected_output: bytes | None = None


@dataclass(frozen=True)
class RequestLimits:
    """What the request asks for, each capped by the server's own (None: the server's)."""

    timeout_ms: int | None = None
    memory_bytes: int | None = None
    output_bytes: int | None = None
    compile_timeout_ms: int | None = None
    compile_memory_bytes: int | None = None


@dataclass(frozen=True)
class RunRequest:
    language: str
    # The first file is the entry point: the language's source file.
    files: tuple[SourceFile, ...]
    stdin: bytes = b""
    args: tuple[str, ...] = ()
    limits: RequestLimits = field(default_factory=RequestLimits)
    # None: one run with `stdin`; else one run of the (once compiled) program per test case.
    tests: tuple[TestCase, ...] | None = None
    compare: Compare = Compare.EXACT
    # One stream for stdout and stderr, as `"mergeStderr": true` (Judge0's redirect_stderr_to_stdout).
    merge_stderr: bool = False


@dataclass(frozen=True)
class Stage:
    status: Status
    exit_code: int | None = None
    # The signal that ended the program ("SIGKILL"), None when it exited by itself.
    signal: str | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    # stdout and stderr as they came, interleaved (Piston's `output`).
    output: bytes = b""
    truncated_stdout: bool = False
    truncated_stderr: bool = False
    usage: Usage | None = None
    # Why, for a person, when the status alone does not say (internal_error, a limit).
    message: str | None = None


@dataclass(frozen=True)
class TestResult:
    id: str
    stage: Stage
    verdict: Verdict


@dataclass(frozen=True)
class RunResult:
    language: str
    version: str
    compile: Stage | None
    # The run of a request without tests; None with tests, or when the compile stage failed.
    run: Stage | None
    tests: tuple[TestResult, ...] | None = None

    def ending(self) -> dict:
        """How the run ended, for its record and the log: the exit code and usage of its last
        stage (the run, the last test, or the compile that failed), the bytes of all its output."""
        stages = [s for s in (self.compile, self.run, *(t.stage for t in self.tests or ())) if s is not None]
        last = stages[-1] if stages else None
        return {
            "exit_code": last.exit_code if last else None,
            "usage": last.usage.public() if last and last.usage else None,
            "output_bytes": sum(len(s.stdout) + len(s.stderr) for s in stages),
        }


@dataclass(frozen=True)
class RunView:
    """A run as GET /run/<id> sees it: its state, and once finished its result (or its error)."""

    run_id: str
    state: RunState
    language: str
    created_at: float
    result: RunResult | None = None
    # An EngineError's (code, message) when the run could not be carried out at all.
    error: tuple[str, str] | None = None
    # When it finished, and the request it carries out (Judge0 answers with both), if kept.
    finished_at: float | None = None
    request: RunRequest | None = None


class Runner(Protocol):
    """What an API needs of the batch runs (see runs.Runs, and the unit tests' fake). Each
    raises EngineError for a request it refuses (unknown language, at capacity, no such run).
    A run belongs to the API key that asked for it (None: no key): no other key finds it."""

    def run(self, request: RunRequest, key: Key | None = None) -> RunResult:
        """Carry the request out and return its result (bounded by the run's timeouts)."""

    def submit(self, request: RunRequest, key: Key | None = None) -> str:
        """Start the request in the background; its run id at once."""

    def get(self, run_id: str, key: Key | None = None) -> RunView:
        """A run as it stands, from any worker of the server."""

    def wait(self, run_id: str, timeout: float, key: Key | None = None) -> RunView:
        """The run once finished, or as it stands after timeout seconds."""

    def version(self, language: str) -> str:
        """The version of a language as its image recorded it."""


def verdict(stage: Stage, expected: bytes | None, compare: Compare) -> Verdict:
    """A test case's verdict: its stage's status, or its output against the expected."""
    if stage.status is not Status.OK:
        return Verdict(stage.status.value)
    if expected is None or same_output(stage.stdout, expected, compare):
        return Verdict.ACCEPTED
    return Verdict.WRONG_ANSWER


def same_output(actual: bytes, expected: bytes, compare: Compare) -> bool:
    if compare is Compare.EXACT:
        return actual == expected
    return _trimmed(actual) == _trimmed(expected)


def _trimmed(text: bytes) -> list[bytes]:
    lines = [line.rstrip() for line in text.replace(b"\r\n", b"\n").split(b"\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


# --- storage: a result as JSON, losslessly (bytes as base64), for any worker to read back ----


def dump_request(request: RunRequest) -> dict:
    data = asdict(request)
    data["files"] = [{"name": f.name, "content": base64.b64encode(f.content).decode()} for f in request.files]
    data["stdin"] = base64.b64encode(request.stdin).decode()
    if request.tests is not None:
        data["tests"] = [
            {
                "id": t.id,
                "stdin": base64.b64encode(t.stdin).decode(),
                "expected_output": None
                if t.expected_output is None
                else base64.b64encode(t.expected_output).decode(),
            }
            for t in request.tests
        ]
    return data


def load_request(data: dict) -> RunRequest:
    tests = data.get("tests")
    return RunRequest(
        language=data["language"],
        files=tuple(SourceFile(f["name"], base64.b64decode(f["content"])) for f in data["files"]),
        stdin=base64.b64decode(data["stdin"]),
        args=tuple(data["args"]),
        limits=RequestLimits(**data["limits"]),
        tests=None
        if tests is None
        else tuple(
            TestCase(
                t["id"],
                base64.b64decode(t["stdin"]),
                None if t["expected_output"] is None else base64.b64decode(t["expected_output"]),
            )
            for t in tests
        ),
        compare=Compare(data["compare"]),
        merge_stderr=data.get("merge_stderr", False),
    )


def dump_result(result: RunResult) -> dict:
    return {
        "language": result.language,
        "version": result.version,
        "compile": _dump_stage(result.compile),
        "run": _dump_stage(result.run),
        "tests": None
        if result.tests is None
        else [{"id": t.id, "verdict": t.verdict, "stage": _dump_stage(t.stage)} for t in result.tests],
    }


def load_result(data: dict) -> RunResult:
    tests = data.get("tests")
    return RunResult(
        language=data["language"],
        version=data["version"],
        compile=_load_stage(data.get("compile")),
        run=_load_stage(data.get("run")),
        tests=None
        if tests is None
        else tuple(TestResult(t["id"], _load_stage(t["stage"]), Verdict(t["verdict"])) for t in tests),
    )


_BYTES = ("stdout", "stderr", "output")


def _dump_stage(stage: Stage | None) -> dict | None:
    if stage is None:
        return None
    data = {name: getattr(stage, name) for name in stage.__dataclass_fields__}
    for name in _BYTES:
        data[name] = base64.b64encode(data[name]).decode()
    data["usage"] = None if stage.usage is None else asdict(stage.usage)
    return data


def _load_stage(data: dict | None) -> Stage:
    if data is None:
        return None  # type: ignore[return-value]
    data = dict(data)
    for name in _BYTES:
        data[name] = base64.b64decode(data[name])
    data["status"] = Status(data["status"])
    data["usage"] = None if data.get("usage") is None else Usage(**data["usage"])
    return Stage(**data)
