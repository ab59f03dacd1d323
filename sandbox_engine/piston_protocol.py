"""Piston v2's requests in our terms: its runtimes (our languages under its names), and its
/execute and /connect requests, checked, as a Job and then a RunRequest. Pure functions and data.

Field names, messages and units follow Piston's own source (api/src/api/v2.js, api/src/job.js):
times in milliseconds, memory in bytes. What it answers is piston_answers.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from dataclasses import dataclass

from .batch import RequestLimits, RunRequest, SourceFile
from .config import Config
from .piston_versions import parse_version, satisfies


class PistonError(ValueError):
    """A request Piston would refuse: answered `{"message": ...}`, with status 400."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Runtime:
    """One of our languages as Piston lists it."""

    id: str
    language: str
    version: str
    aliases: tuple[str, ...] = ()
    # Piston names the runtime where one serves several languages (gcc, node, mono).
    runtime: str | None = None

    def public(self) -> dict:
        answer: dict = {"language": self.language, "version": self.version, "aliases": list(self.aliases)}
        if self.runtime is not None:
            answer["runtime"] = self.runtime
        return answer

    def answers_to(self, name: str) -> bool:
        name = name.lower()
        return name in (self.id, self.language) or name in self.aliases


# Piston's name, aliases and runtime for each of our languages, as its packages give them, so
# that a client written for Piston finds its languages by the names it knows. A language not
# listed here is offered under its id, without aliases.
PISTON_NAMES: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "python": ("python", ("py", "py3", "python3"), None),
    "javascript": ("javascript", ("node-javascript", "node-js", "javascript", "js"), "node"),
    "typescript": ("typescript", ("ts", "node-ts", "tsc"), None),
    "c": ("c", ("gcc",), "gcc"),
    "cpp": ("c++", ("cpp", "g++"), "gcc"),
    "go": ("go", ("go", "golang"), None),
    "rust": ("rust", ("rs",), None),
    "java": ("java", (), None),
    "ruby": ("ruby", ("ruby3", "rb"), None),
    "php": ("php", (), None),
    "perl": ("perl", ("pl",), None),
    "lua": ("lua", (), None),
    "bash": ("bash", ("sh",), None),
    "csharp": ("csharp", ("mono", "mono-csharp", "mono-c#", "mono-cs", "c#", "cs"), "mono"),
    "haskell": ("haskell", ("haskell", "hs"), None),
}


def runtimes(versions: Mapping[str, str]) -> list[Runtime]:
    """Our languages (id: installed version) as Piston's runtimes, in our order."""
    listed = []
    for language_id, version in versions.items():
        name, aliases, runtime = PISTON_NAMES.get(language_id, (language_id, (), None))
        listed.append(Runtime(language_id, name, version, aliases, runtime))
    return listed


def find_runtime(available: list[Runtime], language: str, version: str) -> Runtime:
    """The newest runtime called `language` (a name or an alias) whose version is in `version`."""
    matching = [rt for rt in available if rt.answers_to(language) and satisfies(rt.version, version)]
    if not matching:
        raise PistonError(f"{language}-{version} runtime is unknown")
    return max(matching, key=lambda rt: parse_version(rt.version) or (0, 0, 0))


@dataclass(frozen=True)
class ServerLimits:
    """The most a request may ask for; Piston's `<stage>_<constraint>` names, in its units."""

    run_timeout: int
    compile_timeout: int
    run_memory_limit: int
    compile_memory_limit: int

    @classmethod
    def of(cls, config: Config) -> ServerLimits:
        return cls(
            run_timeout=int(config.run_timeout * 1000),
            compile_timeout=int(config.compile_timeout * 1000),
            run_memory_limit=config.memory,
            compile_memory_limit=config.compile_memory,
        )


@dataclass(frozen=True)
class Job:
    """A Piston request, checked: what to run, where, with what (limits None: the server's)."""

    runtime: Runtime
    # The entry point first: Piston runs the first file given as text (utf8).
    files: tuple[SourceFile, ...]
    stdin: str
    args: tuple[str, ...]
    run_timeout: int | None = None
    compile_timeout: int | None = None
    run_memory_limit: int | None = None
    compile_memory_limit: int | None = None


ENCODINGS = ("utf8", "base64", "hex")
# Piston's limits, checked in its order. The CPU times are taken and checked against the
# timeouts (they bound CPU time too), not enforced apart from them.
CONSTRAINTS = ("memory_limit", "timeout", "cpu_time")


def parse_job(body: object, available: list[Runtime], limits: ServerLimits) -> Job:
    """Check a request's fields in Piston's order, with Piston's messages; PistonError if bad."""
    if not isinstance(body, dict):
        raise PistonError("the body must be a JSON object")
    language, version, files = body.get("language"), body.get("version"), body.get("files")
    if not language or not isinstance(language, str):
        raise PistonError("language is required as a string")
    if not version or not isinstance(version, str):
        raise PistonError("version is required as a string")
    if not isinstance(files, list):
        raise PistonError("files is required as an array")
    for i, file in enumerate(files):
        if not isinstance(file, dict) or not isinstance(file.get("content"), str):
            raise PistonError(f"files[{i}].content is required as a string")
    runtime = find_runtime(available, language, version)
    if not any(file.get("encoding") in (None, "utf8") for file in files):
        raise PistonError("files must include at least one utf8 encoded file")
    asked = _limits(body, limits)
    stdin = body.get("stdin")
    if stdin is None:
        stdin = ""
    if not isinstance(stdin, str) or not _is_text(stdin):
        raise PistonError("stdin must be a string")
    args = body.get("args")
    if args is None:
        args = []
    if not isinstance(args, list) or not all(_is_argument(arg) for arg in args):
        raise PistonError("args must be an array of strings")
    return Job(runtime, _source_files(files), stdin, tuple(args), **asked)


def _limits(body: dict, limits: ServerLimits) -> dict[str, int | None]:
    asked: dict[str, int | None] = {}
    for constraint in CONSTRAINTS:
        for stage in ("compile", "run"):
            name = f"{stage}_{constraint}"
            value = body.get(name)
            configured = getattr(limits, f"{stage}_{'timeout' if constraint == 'cpu_time' else constraint}")
            # Piston takes 0 and null as "the default", as it takes any false value.
            if value is None or value == 0:
                value = None
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise PistonError(f"If specified, {name} must be a number")
            elif value > configured:
                raise PistonError(f"{name} cannot exceed the configured limit of {configured}")
            elif value == -1:
                value = None  # Piston's "no limit": the most this server allows
            elif value < 0:
                raise PistonError(f"{name} must be non-negative")
            if constraint != "cpu_time":
                asked[name] = None if value is None else math.ceil(value)
    return asked


def _is_text(text: str) -> bool:
    """Whether a JSON string has UTF-8 bytes: half a surrogate pair has none."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_argument(arg: object) -> bool:
    return isinstance(arg, str) and _is_text(arg) and "\0" not in arg


def _source_files(files: list[dict]) -> tuple[SourceFile, ...]:
    decoded = []
    entry = None
    for i, file in enumerate(files):
        name = file.get("name") or f"file{i}.code"
        if not isinstance(name, str):
            raise PistonError(f"files[{i}].name must be a string")
        if name.startswith("/") or ".." in name.split("/"):
            raise PistonError(f'File path "{name[:40]}" tries to escape parent directory')
        if any(ord(char) < 32 for char in name):
            raise PistonError(f"files[{i}].name must not hold control characters")
        encoding = file.get("encoding") or "utf8"
        if encoding not in ENCODINGS:
            raise PistonError(f"files[{i}].encoding must be one of {', '.join(ENCODINGS)}")
        decoded.append(SourceFile(name, _content(i, file["content"], encoding)))
        if entry is None and encoding == "utf8":
            entry = len(decoded) - 1
    assert entry is not None  # parse_job checked there is a utf8 file
    return (decoded[entry], *decoded[:entry], *decoded[entry + 1 :])


def _content(i: int, content: str, encoding: str) -> bytes:
    try:
        if encoding == "base64":
            # As Node's Buffer.from(s, "base64"): either alphabet, padding optional, spaces ignored.
            packed = "".join(content.split())
            return base64.b64decode(packed + "=" * (-len(packed) % 4), altchars=b"-_")
        if encoding == "hex":
            return bytes.fromhex(content)
        return content.encode("utf-8")
    except (binascii.Error, ValueError):
        raise PistonError(f"files[{i}].content is not valid {encoding}") from None


def run_request(job: Job) -> RunRequest:
    """A checked /execute request as our batch run."""
    # Piston ends stdin with a newline when it has none, so a program that reads one line
    # always finds its end; its clients' expected outputs rely on it.
    stdin = job.stdin if job.stdin.endswith("\n") else job.stdin + "\n"
    return RunRequest(
        language=job.runtime.id,
        files=job.files,
        stdin=stdin.encode("utf-8"),
        args=job.args,
        limits=RequestLimits(
            timeout_ms=job.run_timeout,
            memory_bytes=job.run_memory_limit,
            compile_timeout_ms=job.compile_timeout,
            compile_memory_bytes=job.compile_memory_limit,
        ),
    )
