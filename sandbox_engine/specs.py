"""Where languages and configuration meet: the sandbox a language gets under this server's limits."""

from __future__ import annotations

from . import launch
from .config import Config
from .executor import Limits, SandboxSpec
from .languages import LanguageSpec
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
        compile=launch.compile_stage(language.launcher, language.compile),
        compile_limits=compile_limits(config),
        tty=tty,
        launcher=language.launcher,
    )
