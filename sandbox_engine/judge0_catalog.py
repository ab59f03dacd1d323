"""What a Judge0 CE client reads before it submits: the languages under Judge0 CE's own ids, the
statuses, /about and /config_info, this server's limits in Judge0's terms. Pure data and
functions; the blueprint (judge0.py) serves them.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from .config import Config
from .languages import LanguageSpec

# The Judge0 CE release whose API this mirrors. Its official SDK looks the version up in a table
# of language ids (judge0.PYTHON is 71 in 1.13.1), so it must be exactly a release's.
VERSION = "1.13.1"
# Judge0's default batch size, which its SDK splits larger batches by.
MAX_BATCH = 20
# What a sandbox's stack may grow to (Docker's default ulimit); stack_limit itself is not applied.
STACK_KB = 8192


@dataclass(frozen=True)
class Judge0Language:
    id: int
    # Ours (sandbox_engine.languages).
    language: str
    # Judge0's name for it, with our version in it.
    name: str

    def title(self, version: str) -> str:
        return self.name.format(version=version)


# Judge0 CE 1.13.1's ids for the languages we run (its db/languages/active.rb). C++ has two there
# as here: 54 is its C++, and 52 is the one the official SDK's `judge0.CPP` picks.
LANGUAGES = (
    Judge0Language(46, "bash", "Bash ({version})"),
    Judge0Language(50, "c", "C (GCC {version})"),
    Judge0Language(51, "csharp", "C# (Mono {version})"),
    Judge0Language(52, "cpp", "C++ (GCC {version})"),
    Judge0Language(54, "cpp", "C++ (GCC {version})"),
    Judge0Language(60, "go", "Go ({version})"),
    Judge0Language(61, "haskell", "Haskell (GHC {version})"),
    Judge0Language(62, "java", "Java (OpenJDK {version})"),
    Judge0Language(63, "javascript", "JavaScript (Node.js {version})"),
    Judge0Language(64, "lua", "Lua ({version})"),
    Judge0Language(68, "php", "PHP ({version})"),
    Judge0Language(71, "python", "Python ({version})"),
    Judge0Language(72, "ruby", "Ruby ({version})"),
    Judge0Language(73, "rust", "Rust ({version})"),
    Judge0Language(74, "typescript", "TypeScript ({version})"),
    Judge0Language(85, "perl", "Perl ({version})"),
)
BY_ID = {entry.id: entry for entry in LANGUAGES}
# The id a run of ours is reported under: a language's last (C++: 54).
ID_OF = {entry.language: entry.id for entry in LANGUAGES}

STATUSES = {
    1: "In Queue",
    2: "Processing",
    3: "Accepted",
    4: "Wrong Answer",
    5: "Time Limit Exceeded",
    6: "Compilation Error",
    7: "Runtime Error (SIGSEGV)",
    8: "Runtime Error (SIGXFSZ)",
    9: "Runtime Error (SIGFPE)",
    10: "Runtime Error (SIGABRT)",
    11: "Runtime Error (NZEC)",
    12: "Runtime Error (Other)",
    13: "Internal Error",
    14: "Exec Format Error",
}


def served(specs: Mapping[str, LanguageSpec]) -> list[Judge0Language]:
    """The Judge0 languages of the languages this server offers."""
    return [entry for entry in LANGUAGES if entry.language in specs]


def languages(specs: Mapping[str, LanguageSpec], versions: Mapping[str, str]) -> list[dict]:
    """GET /languages: id and name, by name as Judge0 lists them."""
    listed = [{"id": e.id, "name": e.title(versions[e.language])} for e in served(specs)]
    return sorted(listed, key=lambda language: (language["name"], language["id"]))


def language(entry: Judge0Language, spec: LanguageSpec, version: str) -> dict:
    """GET /languages/<id>: with the file the source goes to and the commands that build and run it."""
    return {
        "id": entry.id,
        "name": entry.title(version),
        "is_archived": False,
        "source_file": spec.source_file,
        "compile_cmd": shlex.join(spec.compile) if spec.compile else None,
        "run_cmd": shlex.join(spec.run),
    }


def statuses() -> list[dict]:
    return [{"id": id, "description": description} for id, description in STATUSES.items()]


def about() -> dict:
    return {
        "version": VERSION,
        # The version of Judge0's API answered here; the server is sandbox-engine.
        "homepage": None,
        "source_code": None,
        "maintainer": "sandbox-engine (Judge0 CE's API)",
    }


def config_info(config: Config) -> dict:
    """GET /config_info: every key Judge0 sends (its SDK requires them all), with our limits.
    Time limits are the run's wall clock (--run-timeout), as no limit of CPU time is kept."""
    seconds = float(config.run_timeout)
    return {
        "maintenance_mode": False,
        "enable_wait_result": True,
        "enable_compiler_options": False,
        "allowed_languages_for_compile_options": [],
        "enable_command_line_arguments": True,
        "enable_submission_delete": False,
        "enable_callbacks": False,
        "callbacks_max_tries": 0,
        "callbacks_timeout": 0.0,
        "enable_additional_files": True,
        "max_queue_size": config.max_sessions,
        "cpu_time_limit": seconds,
        "max_cpu_time_limit": seconds,
        "cpu_extra_time": 0.0,
        "max_cpu_extra_time": 0.0,
        "wall_time_limit": seconds,
        "max_wall_time_limit": seconds,
        "memory_limit": config.memory // 1024,
        "max_memory_limit": config.memory // 1024,
        "stack_limit": STACK_KB,
        "max_stack_limit": STACK_KB,
        "max_processes_and_or_threads": config.pids,
        "max_max_processes_and_or_threads": config.pids,
        "enable_per_process_and_thread_time_limit": False,
        "allow_enable_per_process_and_thread_time_limit": False,
        "enable_per_process_and_thread_memory_limit": False,
        "allow_enable_per_process_and_thread_memory_limit": False,
        "max_file_size": config.output_limit // 1024,
        "max_max_file_size": config.output_limit // 1024,
        "number_of_runs": 1,
        "max_number_of_runs": 1,
        "redirect_stderr_to_stdout": False,
        "max_extract_size": config.max_code_size // 1024,
        "enable_batched_submissions": True,
        "max_submission_batch_size": MAX_BATCH,
        "submission_cache_duration": 0.0,
        "use_docs_as_homepage": False,
        "allow_enable_network": False,
        "enable_network": False,
        # Base64 only when asked for (base64_encoded=true), as Judge0 1.13 and its docs have it.
        "disable_implicit_base64_encoding": True,
    }
