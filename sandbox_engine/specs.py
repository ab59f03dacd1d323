"""Where languages and configuration meet: the sandbox a language gets under this server's limits."""

from __future__ import annotations

import time

from . import launch_typescript
from .config import Config
from .errors import EngineError, Kind
from .executor import Limits, SandboxSpec, Terminal
from .keys import Key
from .languages import LanguageSpec
from .protocol import shown
from .records import Record
from .states import State
from .timeouts import RunLimits


def run_limits(config: Config) -> Limits:
    """What a program may use while it runs."""
    return Limits(memory=config.memory, cpus=config.cpus, pids=config.pids, disk=config.disk)


def session_limits(config: Config) -> RunLimits:
    """A session's timeouts and limits, its sandbox's for the run stage included."""
    c = config
    return RunLimits(
        c.idle_timeout,
        c.run_timeout,
        c.output_limit,
        compile_timeout=c.compile_timeout,
        sandbox=run_limits(c),
        input_limit=c.input_limit,
        input_timeout=c.input_timeout,
    )


def compile_limits(config: Config) -> Limits:
    """What a compiler may use: more than a program, for rustc, ghc and javac."""
    return Limits(
        memory=config.compile_memory, cpus=config.compile_cpus, pids=config.compile_pids, disk=config.disk
    )


def sandbox_spec(config: Config, language: LanguageSpec, session_id: str | None, tty: bool) -> SandboxSpec:
    """How to create a sandbox for this language: for a session, or (session_id None) for the pool."""
    return SandboxSpec(
        session_id=session_id,
        language=language.id,
        image=language.image,
        source_file=language.source_file,
        command=language.run,
        env=dict(language.env),
        limits=run_limits(config),
        compile=launch_typescript.compile_stage(language.launcher, language.compile),
        compile_limits=compile_limits(config),
        tty=tty,
        launcher=language.launcher,
    )


def checked_program(
    languages: dict[str, LanguageSpec], max_size: int, language: str, code: str | bytes
) -> tuple[LanguageSpec, bytes]:
    """The language's spec and the code as bytes, or why a session cannot have them."""
    spec = languages.get(language)
    if spec is None:
        known = ", ".join(sorted(languages))
        raise EngineError(Kind.UNKNOWN_LANGUAGE, f"unknown language {shown(language)}; known: {known}")
    source = code.encode("utf-8", "surrogatepass") if isinstance(code, str) else code
    if len(source) > max_size:
        raise EngineError(Kind.TOO_LARGE, f"code is over the limit of {max_size} bytes")
    if b"\x00" in source:
        raise EngineError(Kind.INVALID_REQUEST, "code must not contain NUL characters")
    return spec, source


def new_record(
    session_id: str,
    language: str,
    terminal: Terminal | None,
    merge_stderr: bool,
    batch: bool,
    key: Key | None,
) -> Record:
    """A new session's record, as admission writes it."""
    return Record(
        session_id=session_id,
        language=language,
        state=State.CREATED,
        created_at=time.time(),
        cols=terminal.cols if terminal else None,
        rows=terminal.rows if terminal else None,
        merge_stderr=merge_stderr,
        batch=batch,
        key=key.name if key is not None else None,
    )
