"""Piston v2's requests and answers in our terms: pure translations, checked field by field."""

from __future__ import annotations

import base64

import pytest

from sandbox_engine.batch import RequestLimits, RunResult, SourceFile, Stage, Status, Usage
from sandbox_engine.languages import LANGUAGES
from sandbox_engine.piston_answers import ConnectStages, execute_answer, stage_answer
from sandbox_engine.piston_protocol import (
    PISTON_NAMES,
    PistonError,
    ServerLimits,
    find_runtime,
    parse_job,
    run_request,
    runtimes,
)
from sandbox_engine.piston_versions import parse_version, satisfies

VERSIONS = {"python": "3.11.2", "cpp": "12.2.0", "csharp": "6.8.0.105", "c": "12.2.0"}
RUNTIMES = runtimes(VERSIONS)
MB = 1 << 20
LIMITS = ServerLimits(
    run_timeout=12000, compile_timeout=90000, run_memory_limit=256 * MB, compile_memory_limit=1024 * MB
)


def job(**fields):
    body = {"language": "python", "version": "*", "files": [{"content": "print(1)"}], **fields}
    return parse_job(body, RUNTIMES, LIMITS)


def refused(body: object) -> str:
    with pytest.raises(PistonError) as caught:
        parse_job(body, RUNTIMES, LIMITS)
    return caught.value.message


# --- versions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wanted",
    ["*", "x", "", "3.11.2", "=3.11.2", "v3.11.2", "3.11", "3", "3.x", "3.11.x", "^3.10", "^3.11.1",
     "~3.11.0", ">=3.11 <4", ">= 3.11", ">3.11.1", "<=3.11", "<4", "2 || 3", "3.0 - 3.11", "3.11.2-beta"],
)  # fmt: skip
def test_a_range_node_semver_satisfies_is_satisfied(wanted):
    assert satisfies("3.11.2", wanted)


@pytest.mark.parametrize(
    "wanted",
    ["3.10.0", "3.10", "2", "~3.10", "^3.12", ">3.11", ">3", ">= 3.12", "<3.11", "<3", "3.0 - 3.10",
     "1.x.x", "latest", "3.11.2.", "^*x", ">*"],
)  # fmt: skip
def test_a_range_node_semver_does_not_satisfy_is_not(wanted):
    assert not satisfies("3.11.2", wanted)


def test_caret_and_tilde_below_1_as_npm_reads_them():
    assert satisfies("0.2.9", "^0.2.3") and not satisfies("0.3.0", "^0.2.3")
    assert satisfies("0.0.3", "^0.0.3") and not satisfies("0.0.4", "^0.0.3")
    assert satisfies("1.9.0", "~1") and not satisfies("2.0.0", "~1")


def test_versions_compare_on_their_first_three_numbers():
    assert parse_version("6.8.0.105") == (6, 8, 0)
    assert parse_version("9.0") == (9, 0, 0)
    assert parse_version("unknown") is None
    assert satisfies("6.8.0.105", "6.8.0") and satisfies("12", "12.0.0")
    assert not satisfies("unknown", "*")


# --- runtimes -------------------------------------------------------------------------------


def test_runtimes_are_our_languages_under_pistons_names():
    assert [rt.public() for rt in RUNTIMES] == [
        {"language": "python", "version": "3.11.2", "aliases": ["py", "py3", "python3"]},
        {"language": "c++", "version": "12.2.0", "aliases": ["cpp", "g++"], "runtime": "gcc"},
        {
            "language": "csharp",
            "version": "6.8.0.105",
            "aliases": ["mono", "mono-csharp", "mono-c#", "mono-cs", "c#", "cs"],
            "runtime": "mono",
        },
        {"language": "c", "version": "12.2.0", "aliases": ["gcc"], "runtime": "gcc"},
    ]


def test_a_language_piston_does_not_know_is_offered_under_its_id():
    assert runtimes({"cobol": "3.1"})[0].public() == {"language": "cobol", "version": "3.1", "aliases": []}


def test_every_language_has_pistons_names_and_no_name_means_two_languages():
    assert set(PISTON_NAMES) == set(LANGUAGES)
    everything = runtimes({language: "1.0" for language in LANGUAGES})
    for name in {n for rt in everything for n in (rt.id, rt.language, *rt.aliases)}:
        assert len([rt for rt in everything if rt.answers_to(name)]) == 1, name


@pytest.mark.parametrize("name", ["python", "py", "python3", "Python", "PY3"])
def test_a_language_is_found_by_its_name_or_alias(name):
    assert find_runtime(RUNTIMES, name, "3.11.2").id == "python"


@pytest.mark.parametrize("name", ["c++", "cpp", "g++"])
def test_pistons_names_and_ours_find_the_same_runtime(name):
    assert find_runtime(RUNTIMES, name, "*").id == "cpp"
    assert find_runtime(RUNTIMES, "c#", "*").id == "csharp"


def test_an_unknown_runtime_is_named_as_piston_names_it():
    with pytest.raises(PistonError, match=r"^cobol-\* runtime is unknown$"):
        find_runtime(RUNTIMES, "cobol", "*")
    with pytest.raises(PistonError, match=r"^python-3\.10\.0 runtime is unknown$"):
        find_runtime(RUNTIMES, "python", "3.10.0")


# --- requests -------------------------------------------------------------------------------


def python(**fields) -> dict:
    return {"language": "python", "version": "*", **fields}


@pytest.mark.parametrize(
    "body,message",
    [
        ([], "the body must be a JSON object"),
        ({"version": "*", "files": []}, "language is required as a string"),
        ({"language": 3, "version": "*", "files": []}, "language is required as a string"),
        ({"language": "python", "files": []}, "version is required as a string"),
        ({"language": "python", "version": 3, "files": []}, "version is required as a string"),
        (python(), "files is required as an array"),
        (python(files={}), "files is required as an array"),
        (python(files=[{}]), "files[0].content is required as a string"),
        (python(files=["x"]), "files[0].content is required as a string"),
        (python(files=[{"content": 1}]), "files[0].content is required as a string"),
        ({"language": "cobol", "version": "*", "files": []}, "cobol-* runtime is unknown"),
        (python(files=[]), "files must include at least one utf8 encoded file"),
        (
            python(files=[{"content": "eA==", "encoding": "base64"}]),
            "files must include at least one utf8 encoded file",
        ),
    ],
)
def test_a_bad_request_gets_pistons_message(body, message):
    assert refused(body) == message


def named(name: str) -> list[dict]:
    return [{"content": "x", "name": name}]


def second(**file) -> list[dict]:
    return [{"content": "x"}, file]


ESCAPES = "tries to escape parent directory"


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"run_timeout": 12001}, "run_timeout cannot exceed the configured limit of 12000"),
        ({"compile_timeout": 90001}, "compile_timeout cannot exceed the configured limit of 90000"),
        (
            {"run_memory_limit": 256 * MB + 1},
            f"run_memory_limit cannot exceed the configured limit of {256 * MB}",
        ),
        (
            {"compile_memory_limit": 1e12},
            f"compile_memory_limit cannot exceed the configured limit of {1024 * MB}",
        ),
        ({"run_cpu_time": 12001}, "run_cpu_time cannot exceed the configured limit of 12000"),
        ({"run_timeout": "3000"}, "If specified, run_timeout must be a number"),
        ({"run_memory_limit": True}, "If specified, run_memory_limit must be a number"),
        ({"compile_timeout": -2}, "compile_timeout must be non-negative"),
        ({"stdin": 5}, "stdin must be a string"),
        ({"stdin": "\ud800"}, "stdin must be a string"),
        ({"args": "a b"}, "args must be an array of strings"),
        ({"args": [1]}, "args must be an array of strings"),
        ({"args": ["a\0b"]}, "args must be an array of strings"),
        ({"files": [{"content": "x", "name": 5}]}, "files[0].name must be a string"),
        ({"files": named("../etc/passwd")}, f'File path "../etc/passwd" {ESCAPES}'),
        ({"files": named("/etc/passwd")}, f'File path "/etc/passwd" {ESCAPES}'),
        ({"files": named("a\nb")}, "files[0].name must not hold control characters"),
        (
            {"files": second(content="x", encoding="latin1")},
            "files[1].encoding must be one of utf8, base64, hex",
        ),
        ({"files": second(content="zz", encoding="hex")}, "files[1].content is not valid hex"),
        ({"files": second(content="abcde", encoding="base64")}, "files[1].content is not valid base64"),
        ({"files": [{"content": "\udc00"}]}, "files[0].content is not valid utf8"),
    ],
)
def test_limits_above_the_servers_and_bad_fields_are_refused_clearly(fields, message):
    assert refused({"language": "python", "version": "*", "files": [{"content": "x"}], **fields}) == message


def test_no_limit_asked_for_is_the_servers():
    # Piston's clients send -1 for "no limit" and 0 or null for "the default": the server's.
    for value in (None, 0, -1):
        names = [f"{stage}_{kind}" for stage in ("run", "compile") for kind in ("timeout", "memory_limit")]
        asked = job(**dict.fromkeys(names, value))
        assert [getattr(asked, name) for name in names] == [None] * 4


def test_limits_below_the_servers_are_passed_on_in_our_units():
    asked = job(
        run_timeout=2500.5, compile_timeout=9000, run_memory_limit=64 * MB, compile_memory_limit=12000
    )
    request = run_request(asked)
    assert request.limits == RequestLimits(
        timeout_ms=2501, memory_bytes=64 * MB, compile_timeout_ms=9000, compile_memory_bytes=12000
    )
    # The limit itself is allowed, and a CPU time is checked but not passed on.
    assert job(run_timeout=12000, run_cpu_time=3000, compile_cpu_time=100).run_timeout == 12000


def test_the_first_utf8_file_is_the_entry_point_and_the_others_keep_their_order():
    asked = job(
        files=[
            {"name": "data.bin", "content": base64.b64encode(b"\x00\xff").decode(), "encoding": "base64"},
            {"content": "print(open('data.bin','rb').read())"},
            {"name": "lib.py", "content": "X = 1"},
            {"name": "raw", "content": "00ff41", "encoding": "hex"},
        ]
    )
    assert asked.files == (
        SourceFile("file1.code", b"print(open('data.bin','rb').read())"),
        SourceFile("data.bin", b"\x00\xff"),
        SourceFile("lib.py", b"X = 1"),
        SourceFile("raw", b"\x00\xffA"),
    )


def test_base64_is_read_as_node_reads_it():
    # Either alphabet, padding optional, spaces ignored.
    files = [{"content": "x"}]
    files += [{"content": "+/8 =", "encoding": "base64"}, {"content": "-_8", "encoding": "base64"}]
    assert [f.content for f in job(files=files).files[1:]] == [b"\xfb\xff", b"\xfb\xff"]


def test_the_request_becomes_our_run_request():
    request = run_request(job(language="py3", stdin="Ada", args=["-v", "x y"]))
    assert request.language == "python"
    assert request.files == (SourceFile("file0.code", b"print(1)"),)
    assert request.args == ("-v", "x y")
    assert request.limits == RequestLimits()
    assert request.tests is None


@pytest.mark.parametrize("stdin,given", [(None, b"\n"), ("", b"\n"), ("Ada", b"Ada\n"), ("Ada\n", b"Ada\n")])
def test_stdin_ends_with_a_newline_as_pistons_does(stdin, given):
    assert run_request(job(stdin=stdin)).stdin == given


def test_unknown_fields_are_ignored_as_piston_ignores_them():
    assert job(timeout=10000, extra={"a": 1}).runtime.id == "python"


# --- answers --------------------------------------------------------------------------------

USAGE = Usage(cpu_time_ms=12.3456, wall_time_ms=40.0, memory_peak_bytes=9_000_000)


def test_a_run_that_exited_0_has_no_status():
    stage = Stage(Status.OK, exit_code=0, stdout=b"hi\n", stderr=b"w\n", output=b"hi\nw\n", usage=USAGE)
    assert stage_answer(stage) == {
        "stdout": "hi\n",
        "stderr": "w\n",
        "code": 0,
        "signal": None,
        "output": "hi\nw\n",
        "memory": 9_000_000,
        "message": None,
        "status": None,
        "cpu_time": 12.346,
        "wall_time": 40.0,
    }


KILLED = {"exit_code": 137, "signal": "SIGKILL"}


@pytest.mark.parametrize(
    "stage,ending",
    [
        (Stage(Status.RUNTIME_ERROR, exit_code=3), ("RE", "Exited with error status 3", None, 3)),
        (Stage(Status.COMPILE_ERROR, exit_code=1), ("RE", "Exited with error status 1", None, 1)),
        (
            Stage(Status.RUNTIME_ERROR, exit_code=139, signal="SIGSEGV"),
            ("SG", "Caught fatal signal 11", "SIGSEGV", None),
        ),
        (Stage(Status.TIMEOUT, **KILLED), ("TO", "Time limit exceeded", "SIGKILL", None)),
        (
            Stage(Status.OUTPUT_LIMIT, truncated_stdout=True),
            ("OL", "stdout length exceeded", "SIGKILL", None),
        ),
        (
            Stage(Status.OUTPUT_LIMIT, truncated_stderr=True),
            ("EL", "stderr length exceeded", "SIGKILL", None),
        ),
        (Stage(Status.MEMORY_LIMIT, **KILLED), ("SG", "Memory limit exceeded", "SIGKILL", None)),
        (Stage(Status.INTERNAL_ERROR, message="Docker went away"), ("XX", "Docker went away", None, None)),
        (Stage(Status.INTERNAL_ERROR), ("XX", "internal error", None, None)),
    ],
)
def test_each_ending_has_the_status_isolate_gives_it_in_piston(stage, ending):
    answer = stage_answer(stage)
    assert (answer["status"], answer["message"], answer["signal"], answer["code"]) == ending


def test_output_that_is_not_utf8_has_replacement_characters_and_no_usage_is_null():
    answer = stage_answer(Stage(Status.OK, exit_code=0, stdout=b"a\xffb", output=b"a\xffb"))
    assert answer["stdout"] == answer["output"] == "a\ufffdb"
    assert answer["memory"] is answer["cpu_time"] is answer["wall_time"] is None


PYTHON = RUNTIMES[0]
CPP = RUNTIMES[1]


def test_an_interpreted_run_has_no_compile_stage():
    result = RunResult("python", "3.11.2", compile=None, run=Stage(Status.OK, exit_code=0, stdout=b"1\n"))
    answer = execute_answer(result, PYTHON)
    assert list(answer) == ["language", "version", "run"]
    assert (answer["language"], answer["version"], answer["run"]["stdout"]) == ("python", "3.11.2", "1\n")


def test_a_compiled_run_has_both_stages_under_pistons_name():
    compiled = Stage(Status.OK, exit_code=0, stderr=b"warning\n", output=b"warning\n")
    result = RunResult("cpp", "12.2.0", compile=compiled, run=Stage(Status.OK, exit_code=0, stdout=b"42\n"))
    answer = execute_answer(result, CPP)
    assert answer["language"] == "c++"
    assert answer["compile"]["stderr"] == "warning\n" and answer["run"]["stdout"] == "42\n"


def test_a_failed_compile_is_also_the_run_as_piston_answers_it():
    failed = Stage(Status.COMPILE_ERROR, exit_code=1, stderr=b"error\n", output=b"error\n")
    answer = execute_answer(RunResult("cpp", "12.2.0", compile=failed, run=None), CPP)
    assert answer["run"] == answer["compile"]
    assert answer["run"]["status"] == "RE" and answer["run"]["code"] == 1


# --- /connect's messages --------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def translated(stages: ConnectStages, *messages: dict) -> list[dict]:
    return [out for message in messages for out in stages.translate(message)]


def test_an_interpreted_sessions_messages_as_pistons():
    assert translated(
        ConnectStages(),
        {"type": "state", "state": "RUNNING"},
        {"type": "stdout", "data": "Name: "},
        {"type": "stderr", "data": "oops\n"},
        {"type": "state", "state": "FINISHED", "exitCode": 0, "reason": "exited", "signal": None},
    ) == [
        {"type": "stage", "stage": "run"},
        {"type": "data", "stream": "stdout", "data": "Name: "},
        {"type": "data", "stream": "stderr", "data": "oops\n"},
        {"type": "exit", "stage": "run", "code": 0, "signal": None},
    ]


def test_a_compiled_sessions_messages_as_pistons():
    assert translated(
        ConnectStages(),
        {"type": "state", "state": "COMPILING"},
        {"type": "stderr", "data": "warning\n"},
        {"type": "state", "state": "RUNNING"},
        {"type": "state", "state": "TERMINATED", "exitCode": 137, "reason": "timeout", "signal": "SIGKILL"},
    ) == [
        {"type": "stage", "stage": "compile"},
        {"type": "data", "stream": "stderr", "data": "warning\n"},
        {"type": "exit", "stage": "compile", "code": 0, "signal": None},
        {"type": "stage", "stage": "run"},
        {"type": "exit", "stage": "run", "code": None, "signal": "SIGKILL"},
    ]


def test_a_failed_compile_exits_the_compile_stage_and_runs_nothing():
    assert translated(
        ConnectStages(),
        {"type": "state", "state": "COMPILING"},
        {"type": "state", "state": "FINISHED", "exitCode": 1, "reason": "compile_error", "signal": None},
    ) == [
        {"type": "stage", "stage": "compile"},
        {"type": "exit", "stage": "compile", "code": 1, "signal": None},
    ]


def test_a_stage_expires_after_the_timeout_the_client_asked_for():
    clock = Clock()
    stages = ConnectStages(run_timeout=3000, compile_timeout=10000, clock=clock)
    assert stages.wait() is None and not stages.expired()  # nothing started yet
    stages.translate({"type": "state", "state": "COMPILING"})
    # While compiling, never later than a run started now could expire.
    assert stages.wait() == 3.0
    clock.now += 9.999
    assert not stages.expired()
    assert stages.wait() == pytest.approx(0.001)
    clock.now += 0.001
    assert stages.expired()
    stages.translate({"type": "state", "state": "RUNNING"})
    assert not stages.expired() and stages.wait() == 3.0
    clock.now += 3.0
    assert stages.expired() and stages.wait() == 0.0


def test_without_timeouts_asked_for_there_is_no_deadline():
    stages = ConnectStages(clock=Clock())
    stages.translate({"type": "state", "state": "COMPILING"})
    assert stages.wait() is None and not stages.expired()
