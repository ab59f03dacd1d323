"""A Judge0 CE submission in our terms: its JSON (as Judge0 validates it, app/models/submission.rb
of judge0/judge0) into a batch.RunRequest, or Judge0's 422 with every field's errors. Pure
functions; the blueprint (judge0.py) serves them, judge0_results.py answers them.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import shlex
import zipfile
import zlib
from collections.abc import Callable, Mapping

from .batch import Compare, RequestLimits, RunRequest, SourceFile, TestCase
from .config import Config
from .judge0_catalog import BY_ID
from .languages import LanguageSpec

# Judge0's bound on compiler_options and command_line_arguments, in characters.
MAX_OPTION = 512
# Files an additional_files archive may hold.
MAX_FILES = 100
# Rails' false values for a boolean attribute; anything else given counts as true.
FALSE_VALUES = frozenset({"0", "f", "F", "false", "FALSE", "off", "OFF"})
_NUMBER = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)\s*$")
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/]")


class Judge0Error(Exception):
    """An answer in Judge0's shape: {"error": "..."}, or a 422's errors by field."""

    def __init__(self, status: int, body: dict, headers: dict | None = None) -> None:
        super().__init__(body)
        self.status = status
        self.body = body
        self.headers = headers or {}


def parse_submission(
    body: Mapping, encoded: bool, config: Config, specs: Mapping[str, LanguageSpec]
) -> RunRequest:
    """A submission as Judge0 takes it, or Judge0Error(422) with every field's errors."""
    errors: dict[str, list[str]] = {}

    def fail(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    spec = _language(body.get("language_id"), specs, fail)
    source = _text(body, "source_code", encoded, fail)
    if source is None or not source.strip():
        if "source_code" not in errors:
            fail("source_code", "can't be blank")
    elif len(source) > config.max_code_size:
        fail("source_code", f"is too long (maximum is {config.max_code_size} bytes)")
    stdin = _text(body, "stdin", encoded, fail) or b""
    expected = _text(body, "expected_output", encoded, fail)
    limits = _limits(body, config, fail)
    args = _arguments(body, fail)
    merge = _flag(body, "redirect_stderr_to_stdout", fail)
    for name, message in (
        ("enable_network", "enabling network is not allowed"),
        ("enable_per_process_and_thread_time_limit", "this option cannot be enabled"),
        ("enable_per_process_and_thread_memory_limit", "this option cannot be enabled"),
    ):
        if _flag(body, name, fail):
            fail(name, message)
    # Not offered: flags for a compile command fixed per language, and calls to any URL a client
    # names, made from inside the server's network.
    for name, message in (
        ("compiler_options", "setting compiler options is not allowed"),
        ("callback_url", "setting callback is not allowed"),
    ):
        if _string(body, name, fail).strip():
            fail(name, message)
    budget = max(0, config.max_code_size - len(source or b""))
    extra = _additional_files(body.get("additional_files"), spec, budget, config.max_code_size, fail)
    if errors or spec is None or source is None:
        raise Judge0Error(422, errors)
    tests = None if expected is None else (TestCase("1", stdin, expected),)
    return RunRequest(
        language=spec.id,
        files=(SourceFile(spec.source_file, source), *extra),
        stdin=b"" if tests else stdin,
        args=args,
        limits=limits,
        tests=tests,
        # Judge0 compares its output and the expected with each line's trailing blanks stripped.
        compare=Compare.TRIM,
        merge_stderr=bool(merge),
    )


def _language(value: object, specs: Mapping[str, LanguageSpec], fail: Callable) -> LanguageSpec | None:
    if value is None or value == "":
        fail("language_id", "can't be blank")
        return None
    number = _integer(value)
    entry = BY_ID.get(number) if number is not None else None
    if entry is None or entry.language not in specs:
        shown = number if number is not None else str(value)[:40]
        fail("language_id", f"language with id {shown} doesn't exist")
        return None
    return specs[entry.language]


def _integer(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str) and _NUMBER.match(value):
        return int(float(value))
    return None


def _limits(body: Mapping, config: Config, fail: Callable) -> RequestLimits:
    """Time, memory and output limits, each at most the server's. Judge0's CPU time limit is held
    as wall-clock time, the only clock a run here is bounded by; 0 is no limit, as in Judge0."""

    def number(name: str, **bounds: float) -> float | None:
        return _number(body, name, fail, **bounds)

    cpu = number("cpu_time_limit", minimum=0, maximum=config.run_timeout)
    wall = number("wall_time_limit", minimum=1, maximum=config.run_timeout)
    memory_kb = number("memory_limit", minimum=2048, maximum=config.memory // 1024)
    file_kb = number("max_file_size", minimum=0, maximum=config.output_limit // 1024)
    number("number_of_runs", above=0, maximum=1)
    # Taken and not applied: a sandbox's own settings hold (see GET /config_info).
    number("cpu_extra_time", minimum=0)
    number("stack_limit", minimum=0)
    number("max_processes_and_or_threads", above=0)
    seconds = [limit for limit in (cpu, wall) if limit]
    return RequestLimits(
        timeout_ms=round(min(seconds) * 1000) if seconds else None,
        memory_bytes=int(memory_kb) * 1024 if memory_kb else None,
        output_bytes=int(file_kb) * 1024 if file_kb else None,
    )


def _number(
    body: Mapping,
    name: str,
    fail: Callable,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
) -> float | None:
    """A number as Rails validates one (numbers or their text); None when absent or refused."""
    value = body.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str) and _NUMBER.match(value):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        fail(name, "is not a number")
        return None
    for bound, refused, words in (
        (above, lambda b: value <= b, "greater than"),
        (minimum, lambda b: value < b, "greater than or equal to"),
        (maximum, lambda b: value > b, "less than or equal to"),
    ):
        if bound is not None and refused(bound):
            fail(name, f"must be {words} {bound}")
            return None
    return value


def _flag(body: Mapping, name: str, fail: Callable) -> bool | None:
    value = body.get(name)
    if isinstance(value, bool):
        return value
    if value is None or value == "":
        return None
    if isinstance(value, int | str):
        return str(value) not in FALSE_VALUES
    fail(name, "must be true or false")
    return None


def _string(body: Mapping, name: str, fail: Callable) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        fail(name, "must be a string")
        return ""
    # A number stands as it was written, as Rails keeps a number given for a text column.
    return value if isinstance(value, str) else json.dumps(value)


def _text(body: Mapping, name: str, encoded: bool, fail: Callable) -> bytes | None:
    """A text attribute's bytes (decoded from base64 with base64_encoded=true); None if absent."""
    if body.get(name) is None:
        return None
    text = _string(body, name, fail)
    if encoded:
        return decode_base64(text)
    try:
        return text.encode()
    except UnicodeEncodeError:
        fail(name, "holds half a character (a lone surrogate); send it with base64_encoded=true")
        return None


def decode_base64(text: str) -> bytes:
    """Base64 as Ruby's Base64.decode64 reads it: up to the padding, skipping what is not base64."""
    kept = _NOT_BASE64.sub("", text.split("=", 1)[0])
    if len(kept) % 4 == 1:
        kept = kept[:-1]
    return base64.b64decode(kept + "=" * (-len(kept) % 4))


def _arguments(body: Mapping, fail: Callable) -> tuple[str, ...]:
    """command_line_arguments, split into words as the shell Judge0 runs them in would (quotes
    group; nothing is expanded)."""
    text = _string(body, "command_line_arguments", fail)
    if len(text) > MAX_OPTION:
        fail("command_line_arguments", f"is too long (maximum is {MAX_OPTION} characters)")
        return ()
    try:
        return tuple(shlex.split(text))
    except ValueError as exc:
        fail("command_line_arguments", f"cannot be split into words: {exc}")
        return ()


def _additional_files(
    value: object, spec: LanguageSpec | None, budget: int, limit: int, fail: Callable
) -> tuple[SourceFile, ...]:
    """additional_files: a base64 .zip whose files go beside the source. As Judge0's `unzip -n`,
    an entry never replaces the source file, nor an earlier entry of the same name."""
    if value is None or value == "":
        return ()
    if not isinstance(value, str):
        fail("additional_files", "must be a base64 string")
        return ()
    taken = {spec.source_file} if spec else set()
    files: list[SourceFile] = []
    try:
        with zipfile.ZipFile(io.BytesIO(decode_base64(value))) as archive:
            entries = [entry for entry in archive.infolist() if not entry.is_dir()]
            if len(entries) > MAX_FILES:
                fail("additional_files", f"hold {len(entries)} files; at most {MAX_FILES}")
                return ()
            for entry in entries:
                name = _member_name(entry.filename)
                if name is None:
                    fail("additional_files", f"hold a file outside the directory: {entry.filename[:80]!r}")
                    return ()
                # Read no more than the budget, whatever size the archive claims.
                with archive.open(entry) as member:
                    content = member.read(budget + 1)
                budget -= len(content)
                if budget < 0:
                    fail("additional_files", f"are over {limit} bytes with the source code")
                    return ()
                if name not in taken:
                    taken.add(name)
                    files.append(SourceFile(name, content))
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,
        RuntimeError,
        ValueError,
        OSError,
        zlib.error,
    ):
        fail("additional_files", "is not a .zip archive that can be extracted")
        return ()
    return tuple(files)


def _member_name(name: str) -> str | None:
    """A relative path inside the workspace, or None (absolute, `..`, a drive, NUL)."""
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    if not parts or name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0] or "\0" in name:
        return None
    return "/".join(parts)
