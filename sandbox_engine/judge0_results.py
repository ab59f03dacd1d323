"""A batch.RunView as the Judge0 CE submission it answers: its status, outputs and measures
as Judge0 decides them (app/jobs/isolate_job.rb, app/serializers/submission_serializer.rb of
judge0/judge0), with the fields asked for. Pure functions; the blueprint (judge0.py) serves them.
"""

from __future__ import annotations

import base64
import io
import shlex
import signal
import zipfile
from dataclasses import dataclass

from .batch import Compare, RunRequest, RunState, RunView, SourceFile, Stage, Status, Verdict, same_output
from .config import Config
from .judge0_catalog import ID_OF, STACK_KB, STATUSES
from .judge0_requests import Judge0Error
from .records import iso

# Every attribute of a submission, in the order Judge0 answers them (its table's columns).
FIELDS = (
    "source_code",
    "language_id",
    "stdin",
    "expected_output",
    "stdout",
    "status_id",
    "created_at",
    "finished_at",
    "time",
    "memory",
    "stderr",
    "token",
    "number_of_runs",
    "cpu_time_limit",
    "cpu_extra_time",
    "wall_time_limit",
    "memory_limit",
    "stack_limit",
    "max_processes_and_or_threads",
    "enable_per_process_and_thread_time_limit",
    "enable_per_process_and_thread_memory_limit",
    "max_file_size",
    "compile_output",
    "exit_code",
    "exit_signal",
    "message",
    "wall_time",
    "compiler_options",
    "command_line_arguments",
    "redirect_stderr_to_stdout",
    "callback_url",
    "additional_files",
    "enable_network",
    "status",
    "language",
)
DEFAULT_FIELDS = ("token", "time", "memory", "stdout", "stderr", "compile_output", "message", "status")
# Text attributes: base64 with base64_encoded=true, else UTF-8 or the conversion error.
TEXT = frozenset({"source_code", "stdin", "expected_output", "stdout", "stderr", "compile_output", "message"})
CONVERSION_ERROR = (
    "some attributes for this submission cannot be converted to UTF-8, "
    "use base64_encoded=true query parameter"
)
BATCH_CONVERSION_ERROR = (
    "some attributes for one or more submissions cannot be converted to UTF-8, "
    "use base64_encoded=true query parameter"
)
# Signals Judge0 names a status after (Status.find_runtime_error_by_status_code); others are 12.
SIGNAL_STATUS = {"SIGSEGV": 7, "SIGXFSZ": 8, "SIGFPE": 9, "SIGABRT": 10}


class NotUtf8(Exception):
    """A text attribute that is not UTF-8, asked for without base64_encoded=true."""


def requested_fields(text: str | None) -> tuple[str, ...]:
    """?fields=: `*` for all, else the names asked for (in Judge0's order); none: the default."""
    names = [name for name in (text or "").split(",") if name]
    if "*" in names:
        return FIELDS
    invalid = [name for name in names if name not in FIELDS]
    if invalid:
        raise Judge0Error(400, {"error": f"invalid fields: [{', '.join(invalid)}]"})
    return tuple(name for name in FIELDS if name in names) or DEFAULT_FIELDS


@dataclass(frozen=True)
class Outcome:
    """What Judge0 says of a run's end: its status, outputs and measures."""

    status: int
    stdout: bytes | None = None
    stderr: bytes | None = None
    compile_output: bytes | None = None
    message: str | None = None
    exit_code: int | None = None
    exit_signal: int | None = None
    time: str | None = None
    wall_time: str | None = None
    memory: int | None = None


def outcome(view: RunView, request: RunRequest | None) -> Outcome:
    if view.state is RunState.QUEUED:
        return Outcome(1)
    if view.state is RunState.RUNNING:
        return Outcome(2)
    result = view.result
    if view.error is not None or result is None:
        return Outcome(13, message=view.error[1] if view.error else "the run ended without a result")
    compiled = result.compile
    compile_output = _all_output(compiled) or None if compiled else None
    if compiled is not None and compiled.status is not Status.OK:
        if compiled.status is Status.INTERNAL_ERROR:
            return Outcome(13, compile_output=compile_output, message=compiled.message or "internal error")
        if compiled.status is Status.TIMEOUT:
            compile_output = b"Compilation time limit exceeded."
        return Outcome(6, compile_output=compile_output)
    test = result.tests[0] if result.tests else None
    stage = test.stage if test else result.run
    if stage is None:
        return Outcome(13, compile_output=compile_output, message="the run ended without a result")
    merged = request is not None and request.merge_stderr
    stdout = _all_output(stage) if merged else stage.stdout
    wrong = test is not None and test.verdict is Verdict.WRONG_ANSWER
    expected = request.tests[0].expected_output if request and request.tests else None
    if merged and stage.status is Status.OK and expected is not None:
        # Judged on what Judge0 would have in stdout: both streams.
        wrong = not same_output(stdout, expected, Compare.TRIM)
    status = status_of(stage, wrong)
    usage = stage.usage
    return Outcome(
        status,
        stdout=stdout or None,
        stderr=None if merged else stage.stderr or None,
        compile_output=compile_output,
        message=_message(stage, status),
        # As isolate reports it, Judge0 has exit code 0 for a program a signal ended.
        exit_code=0 if stage.signal or stage.exit_code is None else stage.exit_code,
        exit_signal=_signal_number(stage.signal),
        time=_seconds(usage.cpu_time_ms) if usage else None,
        wall_time=_seconds(usage.wall_time_ms) if usage else None,
        memory=usage.memory_peak_bytes // 1024 if usage else None,
    )


def status_of(stage: Stage, wrong_answer: bool = False) -> int:
    """Judge0's status of a run's stage. The memory limit ends a program with SIGKILL, which Judge0
    calls Runtime Error (Other); the output limit is its max_file_size, whose SIGXFSZ it names."""
    if stage.status is Status.OK:
        return 4 if wrong_answer else 3
    if stage.status is Status.RUNTIME_ERROR:
        if stage.signal is None:
            return 11
        return SIGNAL_STATUS.get(stage.signal, 12)
    return {
        Status.TIMEOUT: 5,
        Status.COMPILE_ERROR: 6,
        Status.MEMORY_LIMIT: 12,
        Status.OUTPUT_LIMIT: 8,
    }.get(stage.status, 13)


def _message(stage: Stage, status: int) -> str | None:
    """isolate's words, which Judge0 passes on; ours where isolate would not say which limit."""
    if stage.status is Status.TIMEOUT:
        # isolate's words for its wall clock, the one clock a run here is bounded by.
        return "Time limit exceeded (wall clock)"
    if stage.status is Status.MEMORY_LIMIT:
        return stage.message or "Memory limit exceeded"
    if stage.status is Status.OUTPUT_LIMIT:
        return stage.message or "Output limit exceeded"
    if status == 13:
        return stage.message or "internal error"
    if stage.signal is not None:
        number = _signal_number(stage.signal)
        return f"Caught fatal signal {number if number is not None else stage.signal}"
    if stage.exit_code:
        return f"Exited with error status {stage.exit_code}"
    return None


def _all_output(stage: Stage) -> bytes:
    return stage.output or stage.stdout + stage.stderr


def _signal_number(name: str | None) -> int | None:
    try:
        return signal.Signals[name].value if name else None
    except KeyError:
        return None


def _seconds(ms: float) -> str:
    # A decimal, which Judge0's JSON writes as a string: "0.012".
    return str(round(ms / 1000, 3))


def render(
    view: RunView,
    fields: tuple[str, ...],
    encoded: bool,
    config: Config,
    request: RunRequest | None = None,
    language_name: str | None = None,
) -> dict:
    """The submission Judge0 would answer for a run, with the fields asked for. NotUtf8 when a
    text field asked for is not UTF-8 and base64 was not."""
    request = request or view.request
    result = outcome(view, request)
    language_id = ID_OF.get(view.language)
    values = {
        **_echo(request, config, "additional_files" in fields),
        "language_id": language_id,
        "stdout": result.stdout,
        "status_id": result.status,
        "created_at": iso(view.created_at),
        "finished_at": iso(view.finished_at) if view.state is RunState.FINISHED else None,
        "time": result.time,
        "memory": result.memory,
        "stderr": result.stderr,
        "token": view.run_id,
        "compile_output": result.compile_output,
        "exit_code": result.exit_code,
        "exit_signal": result.exit_signal,
        "message": result.message.encode() if result.message is not None else None,
        "wall_time": result.wall_time,
        "status": {"id": result.status, "description": STATUSES[result.status]},
        "language": {"id": language_id, "name": language_name},
    }
    return {name: _shown(name, values.get(name), encoded) for name in fields}


def _echo(request: RunRequest | None, config: Config, with_files: bool) -> dict:
    """The submission's own attributes, as it was taken (the server's limits where it set none)."""
    if request is None:
        return {}
    limits = request.limits
    seconds = str(limits.timeout_ms / 1000 if limits.timeout_ms else float(config.run_timeout))
    test = request.tests[0] if request.tests else None
    return {
        "source_code": request.files[0].content,
        "stdin": test.stdin if test else request.stdin,
        "expected_output": test.expected_output if test else None,
        "number_of_runs": 1,
        "cpu_time_limit": seconds,
        "cpu_extra_time": "0.0",
        "wall_time_limit": seconds,
        "memory_limit": (limits.memory_bytes or config.memory) // 1024,
        "stack_limit": STACK_KB,
        "max_processes_and_or_threads": config.pids,
        "enable_per_process_and_thread_time_limit": False,
        "enable_per_process_and_thread_memory_limit": False,
        "max_file_size": (limits.output_bytes or config.output_limit) // 1024,
        "command_line_arguments": shlex.join(request.args) if request.args else None,
        "redirect_stderr_to_stdout": request.merge_stderr,
        "additional_files": _zipped(request.files[1:]) if with_files and len(request.files) > 1 else None,
        "enable_network": False,
    }


def _zipped(files: tuple[SourceFile, ...]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in files:
            archive.writestr(file.name, file.content)
    return base64.b64encode(buffer.getvalue()).decode()


def _shown(name: str, value: object, encoded: bool) -> object:
    if name not in TEXT or value is None:
        return value
    if encoded:
        return base64.b64encode(value).decode()
    try:
        return value.decode()
    except UnicodeDecodeError:
        raise NotUtf8(name) from None
