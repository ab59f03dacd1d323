"""Judge0 CE's API (/judge0) as a Judge0 client sees it, over a scripted batch Runner: what each
submission becomes (the RunRequest the runner is handed), how each result is answered, every
refusal in Judge0's shape, and Judge0's official SDK running through it all.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import replace

import httpx
import judge0
import judge0.clients
import pytest
from fakes import FakeExecutor
from flask import Flask
from flask.testing import FlaskClient

from sandbox_engine import create_app
from sandbox_engine.batch import (
    Compare,
    RequestLimits,
    RunRequest,
    RunResult,
    RunState,
    RunView,
    SourceFile,
    Stage,
    Status,
    Usage,
    Verdict,
)

# Renamed: pytest would take classes named Test* for tests.
from sandbox_engine.batch import TestCase as Case
from sandbox_engine.batch import TestResult as CaseResult
from sandbox_engine.config import Config
from sandbox_engine.errors import EngineError, Kind
from sandbox_engine.judge0_results import FIELDS, outcome, requested_fields
from sandbox_engine.keys import Key
from sandbox_engine.languages import LANGUAGES, VERSION_LABEL
from sandbox_engine.worker import EXTENSION

CREATED = 1_767_225_600.25  # 2026-01-01T00:00:00.250Z
USAGE = Usage(cpu_time_ms=12.4, wall_time_ms=30.0, memory_peak_bytes=9 * 1024 * 1024)
DEFAULT_FIELDS = ["token", "time", "memory", "stdout", "stderr", "compile_output", "message", "status"]
CONVERSION_ERROR = (
    "some attributes for this submission cannot be converted to UTF-8, "
    "use base64_encoded=true query parameter"
)
# The ids Judge0 CE 1.13.1 gives the languages we run (C++ twice: 52 and 54).
JUDGE0_IDS = {46, 50, 51, 52, 54, 60, 61, 62, 63, 64, 68, 71, 72, 73, 74, 85}


def stage(
    status: Status = Status.OK,
    stdout: bytes = b"",
    stderr: bytes = b"",
    exit_code: int | None = 0,
    signal: str | None = None,
    message: str | None = None,
    usage: Usage | None = USAGE,
) -> Stage:
    return Stage(status, exit_code, signal, stdout, stderr, stdout + stderr, usage=usage, message=message)


def ran(run: Stage | None, compiled: Stage | None = None) -> RunResult:
    return RunResult("python", "3.11.2", compiled, run)


def judged(run: Stage, verdict: Verdict) -> RunResult:
    return RunResult("python", "3.11.2", None, None, tests=(CaseResult("1", run, verdict),))


class FakeRunner:
    """A batch.Runner that records every request and answers as scripted: a run goes through the
    states of `before`, one per look, then finishes with `result` (or `error`)."""

    def __init__(self) -> None:
        self.requests: list[RunRequest] = []
        self.result: RunResult = ran(stage(stdout=b"hi\n"))
        self.error: tuple[str, str] | None = None
        self.before: list[RunState] = []
        # Raised by submit() when set: the runner refuses the request.
        self.refusal: EngineError | None = None
        self.looks = 0
        self._views: dict[str, list[RunView]] = {}
        # The name of the API key each run was submitted with: no other key finds it.
        self.owners: dict[str, str | None] = {}

    def submit(self, request: RunRequest, key: Key | None = None) -> str:
        if self.refusal is not None:
            raise self.refusal
        run_id = str(uuid.uuid4())
        self.requests.append(request)
        self.owners[run_id] = key.name if key is not None else None
        base = RunView(run_id, RunState.QUEUED, request.language, CREATED, request=request)
        finished = replace(
            base, state=RunState.FINISHED, result=self.result, error=self.error, finished_at=CREATED + 1.5
        )
        self._views[run_id] = [replace(base, state=state) for state in self.before] + [finished]
        return run_id

    def get(self, run_id: str, key: Key | None = None) -> RunView:
        self.looks += 1
        views = self._views.get(run_id)
        if views is None or self.owners[run_id] != (key.name if key is not None else None):
            raise EngineError(Kind.NOT_FOUND, f"no run {run_id}")
        return views.pop(0) if len(views) > 1 else views[0]

    def wait(self, run_id: str, timeout: float, key: Key | None = None) -> RunView:
        while (view := self.get(run_id, key)).state is not RunState.FINISHED:
            pass
        return view

    def run(self, request: RunRequest, key: Key | None = None) -> RunResult:
        self.requests.append(request)
        return self.result

    def version(self, language: str) -> str:
        return LANGUAGES[language].version


@pytest.fixture
def config(tmp_path) -> Config:
    return Config(
        state_dir=str(tmp_path / "state"),
        run_timeout=12,
        memory=64 * 1024 * 1024,
        output_limit=100_000,
        max_code_size=1000,
        pids=16,
        max_sessions=3,
    )


@pytest.fixture
def runner() -> FakeRunner:
    return FakeRunner()


@pytest.fixture
def app(config: Config, executor: FakeExecutor, runner: FakeRunner) -> Iterator[Flask]:
    # The versions the images' builds recorded, as GET /languages reports them.
    for spec in LANGUAGES.values():
        executor.labels.setdefault(spec.image, {})[VERSION_LABEL + spec.id] = spec.version + ".7"
    app = create_app(config, executor=executor)
    app.config["TESTING"] = True
    app.extensions[EXTENSION].runs = runner
    yield app
    app.extensions[EXTENSION].shutdown()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def submit(client: FlaskClient, query: str = "", **fields) -> dict:
    body = {"language_id": 71, "source_code": "print(input())", **fields}
    response = client.post(f"/judge0/submissions{query}", json=body)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def submitted(client: FlaskClient, runner: FakeRunner, **fields) -> RunRequest:
    submit(client, **fields)
    return runner.requests[-1]


def refused(client: FlaskClient, runner: FakeRunner, body: dict, query: str = "") -> dict:
    """A submission's 422 in Judge0's shape (errors by field), with nothing submitted."""
    response = client.post(f"/judge0/submissions{query}", json=body)
    assert response.status_code == 422, response.get_data(as_text=True)
    assert runner.requests == []
    errors = response.get_json()
    assert all(isinstance(messages, list) and messages for messages in errors.values())
    return errors


def answer(client: FlaskClient, runner: FakeRunner, result: RunResult, query: str = "", **fields) -> dict:
    runner.result = result
    token = submit(client, **fields)["token"]
    response = client.get(f"/judge0/submissions/{token}{query}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def zipped(files: dict[str, bytes], directories: tuple[str, ...] = ()) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in directories:
            archive.writestr(zipfile.ZipInfo(name), b"")
        for name, content in files.items():
            archive.writestr(name, content)
    return base64.b64encode(buffer.getvalue()).decode()


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


# --- languages, statuses, about, config_info ------------------------------------------------


def test_languages_are_judge0s_ids_with_the_versions_installed(client):
    languages = client.get("/judge0/languages").get_json()
    assert {language["id"] for language in languages} == JUDGE0_IDS
    assert all(list(language) == ["id", "name"] for language in languages)
    # Listed by name, as Judge0 lists them.
    assert [language["name"] for language in languages] == sorted(language["name"] for language in languages)
    names = {language["id"]: language["name"] for language in languages}
    assert names[71] == "Python (3.11.7)"
    assert names[54] == names[52] == "C++ (GCC 12.7)"
    assert names[63] == "JavaScript (Node.js 18.7)"
    assert names[51] == "C# (Mono 6.8.7)"


def test_a_language_by_id_has_its_file_and_commands(client):
    python = client.get("/judge0/languages/71").get_json()
    assert python == {
        "id": 71,
        "name": "Python (3.11.7)",
        "is_archived": False,
        "source_file": "main.py",
        "compile_cmd": None,
        "run_cmd": "python3 -u main.py",
    }
    cpp = client.get("/judge0/languages/54").get_json()
    assert cpp["source_file"] == "main.cpp" and cpp["compile_cmd"].startswith("g++ ")
    assert len(client.get("/judge0/languages/all").get_json()) == len(JUDGE0_IDS)


@pytest.mark.parametrize("language_id", ["70", "9999", "python", "-71", "%C2%B9", "%D9%A7%D9%A1"])
def test_a_language_judge0_has_and_we_do_not_is_404(client, language_id):
    response = client.get(f"/judge0/languages/{language_id}")
    assert response.status_code == 404
    assert response.get_json() == {"status": 404, "error": "Not Found"}


def test_statuses_are_judge0s_fourteen(client):
    statuses = client.get("/judge0/statuses").get_json()
    assert [status["id"] for status in statuses] == list(range(1, 15))
    assert statuses[3] == {"id": 4, "description": "Wrong Answer"}
    assert statuses[10] == {"id": 11, "description": "Runtime Error (NZEC)"}


def test_about_names_the_judge0_release_whose_language_ids_the_sdk_uses(client):
    assert client.get("/judge0/about").get_json()["version"] == "1.13.1"
    assert client.get("/judge0/version").get_data(as_text=True) == "1.13.1"


def test_config_info_is_the_servers_limits_and_satisfies_the_sdk(client):
    info = client.get("/judge0/config_info").get_json()
    judge0.base_types.Config(**info)  # the SDK refuses a config without every key, typed
    assert info["max_cpu_time_limit"] == info["max_wall_time_limit"] == 12.0
    assert info["memory_limit"] == info["max_memory_limit"] == 65536
    assert info["max_max_file_size"] == 97
    assert info["max_max_processes_and_or_threads"] == 16
    assert info["max_queue_size"] == 3
    assert info["max_submission_batch_size"] == 20
    assert (
        info["enable_wait_result"] and info["enable_batched_submissions"] and info["enable_additional_files"]
    )
    assert (
        not info["enable_callbacks"]
        and not info["enable_compiler_options"]
        and not info["allow_enable_network"]
    )


# --- what a submission becomes ----------------------------------------------------------------


def test_a_submission_is_a_run_and_answered_with_its_token(client, runner):
    body = submit(client, stdin="world")
    assert list(body) == ["token"] and str(uuid.UUID(body["token"], version=4)) == body["token"]
    assert runner.requests == [
        RunRequest(
            language="python",
            files=(SourceFile("main.py", b"print(input())"),),
            stdin=b"world",
            compare=Compare.TRIM,
        )
    ]


def test_an_expected_output_makes_it_one_test_case_judged_as_judge0_judges(client, runner):
    request = submitted(client, runner, stdin="a", expected_output="b\n")
    assert request.tests == (Case("1", b"a", b"b\n"),)
    assert request.stdin == b"" and request.compare is Compare.TRIM


def test_base64_encoded_inputs_are_decoded_as_ruby_decodes_them(client, runner):
    # Ruby's Base64.encode64 breaks lines every 60 characters; clients send that as it is.
    source = "print('" + "x" * 80 + "')"
    wrapped = base64.encodebytes(source.encode()).decode()
    assert "\n" in wrapped
    # And without its padding ("b2s" for "b2s="), which Ruby reads all the same.
    body = {"language_id": 71, "source_code": wrapped, "stdin": b64(b"\xff\x00"), "expected_output": "b2s"}
    response = client.post("/judge0/submissions?base64_encoded=true", json=body)
    assert response.status_code == 201
    request = runner.requests[-1]
    assert request.files[0].content == source.encode()
    assert request.tests == (Case("1", b"\xff\x00", b"ok"),)


def test_without_base64_encoded_true_inputs_are_taken_as_text(client, runner):
    request = submitted(client, runner, stdin=b64("hi"))
    assert request.stdin == b64("hi").encode()


@pytest.mark.parametrize(
    ("fields", "limits"),
    [
        ({}, RequestLimits()),
        ({"cpu_time_limit": 2, "wall_time_limit": 5}, RequestLimits(timeout_ms=2000)),
        ({"cpu_time_limit": 0, "wall_time_limit": 3.5}, RequestLimits(timeout_ms=3500)),
        ({"wall_time_limit": "4"}, RequestLimits(timeout_ms=4000)),
        ({"memory_limit": 32768}, RequestLimits(memory_bytes=32 * 1024 * 1024)),
        ({"max_file_size": 64}, RequestLimits(output_bytes=65536)),
        ({"max_file_size": 0}, RequestLimits()),
        # Taken and not applied.
        ({"stack_limit": 64000, "cpu_extra_time": 1, "max_processes_and_or_threads": 60}, RequestLimits()),
        ({"number_of_runs": 1, "enable_network": False, "compiler_options": ""}, RequestLimits()),
    ],
)
def test_limits_are_the_runs_limits(client, runner, fields, limits):
    assert submitted(client, runner, **fields).limits == limits


@pytest.mark.parametrize(
    ("text", "args"),
    [("a b", ("a", "b")), ('one "two three"', ("one", "two three")), ("$HOME", ("$HOME",)), ("", ())],
)
def test_command_line_arguments_are_split_into_words(client, runner, text, args):
    assert submitted(client, runner, command_line_arguments=text).args == args


@pytest.mark.parametrize(("value", "merged"), [(True, True), (False, False), ("true", True), ("0", False)])
def test_redirect_stderr_to_stdout_merges_the_streams(client, runner, value, merged):
    assert submitted(client, runner, redirect_stderr_to_stdout=value).merge_stderr is merged


def test_additional_files_go_beside_the_source_which_they_never_replace(client, runner):
    archive = zipped(
        {"data.txt": b"42\n", "lib/util.py": b"X = 1\n", "main.py": b"evil", "./data.txt": b"again"},
        directories=("lib/",),
    )
    request = submitted(client, runner, additional_files=archive)
    assert request.files == (
        SourceFile("main.py", b"print(input())"),
        SourceFile("data.txt", b"42\n"),
        SourceFile("lib/util.py", b"X = 1\n"),
    )


def test_a_form_body_is_taken_as_rails_takes_it(client, runner):
    response = client.post("/judge0/submissions", data={"language_id": "71", "source_code": "print(1)"})
    assert response.status_code == 201
    assert runner.requests[-1].files[0].content == b"print(1)"


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        (
            {"language_id": None, "source_code": None},
            {"language_id": ["can't be blank"], "source_code": ["can't be blank"]},
        ),
        ({"language_id": 999}, {"language_id": ["language with id 999 doesn't exist"]}),
        ({"language_id": 70}, {"language_id": ["language with id 70 doesn't exist"]}),
        ({"language_id": "abc"}, {"language_id": ["language with id abc doesn't exist"]}),
        ({"source_code": " \n\t"}, {"source_code": ["can't be blank"]}),
        ({"source_code": "x" * 1001}, {"source_code": ["is too long (maximum is 1000 bytes)"]}),
        ({"stdin": {"a": 1}}, {"stdin": ["must be a string"]}),
        ({"memory_limit": 65537}, {"memory_limit": ["must be less than or equal to 65536"]}),
        ({"memory_limit": 1024}, {"memory_limit": ["must be greater than or equal to 2048"]}),
        ({"memory_limit": "lots"}, {"memory_limit": ["is not a number"]}),
        ({"memory_limit": True}, {"memory_limit": ["is not a number"]}),
        ({"cpu_time_limit": 12.5}, {"cpu_time_limit": ["must be less than or equal to 12"]}),
        ({"cpu_time_limit": -1}, {"cpu_time_limit": ["must be greater than or equal to 0"]}),
        ({"wall_time_limit": 0.5}, {"wall_time_limit": ["must be greater than or equal to 1"]}),
        ({"max_file_size": 98}, {"max_file_size": ["must be less than or equal to 97"]}),
        ({"number_of_runs": 2}, {"number_of_runs": ["must be less than or equal to 1"]}),
        ({"number_of_runs": 0}, {"number_of_runs": ["must be greater than 0"]}),
        ({"compiler_options": "-O3"}, {"compiler_options": ["setting compiler options is not allowed"]}),
        ({"callback_url": "http://10.0.0.1/"}, {"callback_url": ["setting callback is not allowed"]}),
        ({"enable_network": True}, {"enable_network": ["enabling network is not allowed"]}),
        (
            {"enable_per_process_and_thread_time_limit": True},
            {"enable_per_process_and_thread_time_limit": ["this option cannot be enabled"]},
        ),
        (
            {"command_line_arguments": "x" * 513},
            {"command_line_arguments": ["is too long (maximum is 512 characters)"]},
        ),
        (
            {"command_line_arguments": 'a "b'},
            {"command_line_arguments": ["cannot be split into words: No closing quotation"]},
        ),
        ({"redirect_stderr_to_stdout": [True]}, {"redirect_stderr_to_stdout": ["must be true or false"]}),
        (
            {"additional_files": b64("not a zip")},
            {"additional_files": ["is not a .zip archive that can be extracted"]},
        ),
        ({"additional_files": 7}, {"additional_files": ["must be a base64 string"]}),
        (
            {"additional_files": zipped({"../escape": b"x"})},
            {"additional_files": ["hold a file outside the directory: '../escape'"]},
        ),
        (
            {"additional_files": zipped({"/etc/passwd": b"x"})},
            {"additional_files": ["hold a file outside the directory: '/etc/passwd'"]},
        ),
        (
            {"additional_files": zipped({"big": b"x" * 995})},
            {"additional_files": ["are over 1000 bytes with the source code"]},
        ),
        (
            {"memory_limit": 1, "wall_time_limit": 99, "callback_url": "x"},
            {
                "wall_time_limit": ["must be less than or equal to 12"],
                "memory_limit": ["must be greater than or equal to 2048"],
                "callback_url": ["setting callback is not allowed"],
            },
        ),
    ],
)
def test_a_submission_judge0_would_refuse_is_422_with_every_fields_errors(client, runner, fields, errors):
    body = {"language_id": 71, "source_code": "print(1)", **fields}
    assert refused(client, runner, {k: v for k, v in body.items() if v is not None}) == errors


REQUEST_FIELDS = [
    "source_code",
    "language_id",
    "stdin",
    "expected_output",
    "cpu_time_limit",
    "cpu_extra_time",
    "wall_time_limit",
    "memory_limit",
    "stack_limit",
    "max_processes_and_or_threads",
    "enable_per_process_and_thread_time_limit",
    "enable_per_process_and_thread_memory_limit",
    "max_file_size",
    "number_of_runs",
    "compiler_options",
    "command_line_arguments",
    "redirect_stderr_to_stdout",
    "callback_url",
    "additional_files",
    "enable_network",
    "not_a_field",
]
ODD_VALUES = [None, True, False, 0, -1, 1.5, 1e308, "", "abc", "71", "1e3", [], {}, "\ud800", "x" * 5000]


@pytest.mark.parametrize("encoded", ["", "?base64_encoded=true"])
@pytest.mark.parametrize("name", REQUEST_FIELDS)
def test_any_value_of_any_field_is_taken_or_refused_never_a_crash(client, name, encoded):
    for value in ODD_VALUES:
        body = {"language_id": 71, "source_code": "cHJpbnQoMSk=", name: value}
        response = client.post(
            f"/judge0/submissions{encoded}", data=json.dumps(body), content_type="application/json"
        )
        assert response.status_code in (201, 422), (value, response.get_data(as_text=True))
        answer = response.get_json()
        assert isinstance(answer, dict) and all(isinstance(key, str) for key in answer)


def test_a_zip_bomb_is_read_no_further_than_the_size_allowed(client, runner):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros", b"\0" * 5_000_000)
    errors = refused(
        client, runner, {"language_id": 71, "source_code": "1", "additional_files": b64(buffer.getvalue())}
    )
    assert errors == {"additional_files": ["are over 1000 bytes with the source code"]}


@pytest.mark.parametrize(
    ("data", "content_type", "error"),
    [
        (
            "{not json",
            "application/json",
            "the body is not valid JSON: Expecting property name enclosed in double quotes",
        ),
        ("[1, 2]", "application/json", "the body must be a JSON object"),
        ('{"language_id": NaN}', "application/json", "the body is not valid JSON: NaN is not a JSON number"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_400(client, runner, data, content_type, error):
    response = client.post("/judge0/submissions", data=data, content_type=content_type)
    assert response.status_code == 400
    assert response.get_json() == {"error": error}


def test_unknown_fields_are_400_before_the_submission_is_taken(client, runner):
    response = client.post("/judge0/submissions?fields=stdout,nope,time,Stdout", json={})
    assert response.status_code == 400
    assert response.get_json() == {"error": "invalid fields: [nope, Stdout]"}
    assert runner.requests == []


def test_a_full_server_is_judge0s_queue_is_full(client, runner):
    runner.refusal = EngineError(Kind.AT_CAPACITY, "3 sessions are live", retry_after=2)
    response = client.post("/judge0/submissions", json={"language_id": 71, "source_code": "1"})
    assert response.status_code == 503
    assert response.get_json() == {"error": "queue is full"}
    assert response.headers["Retry-After"] == "2"


def test_a_runtime_that_is_down_is_503_with_the_reason(client, runner):
    runner.refusal = EngineError(Kind.RUNTIME_UNAVAILABLE, "Docker does not answer")
    response = client.post("/judge0/submissions", json={"language_id": 71, "source_code": "1"})
    assert (response.status_code, response.get_json()) == (503, {"error": "Docker does not answer"})


def test_without_batch_runs_submissions_are_503_and_the_catalog_still_answers(app, client):
    app.extensions[EXTENSION].runs = None
    response = client.post("/judge0/submissions", json={"language_id": 71, "source_code": "1"})
    assert response.status_code == 503 and "not available" in response.get_json()["error"]
    assert client.get("/judge0/submissions/x").status_code == 503
    assert client.get("/judge0/languages").status_code == 200


def test_an_unknown_token_is_404(client):
    response = client.get(f"/judge0/submissions/{uuid.uuid4()}")
    assert (response.status_code, response.get_json()) == (404, {"status": 404, "error": "Not Found"})


def test_delete_is_not_allowed_as_on_a_judge0_without_it(client):
    response = client.delete(f"/judge0/submissions/{uuid.uuid4()}")
    assert (response.status_code, response.get_json()) == (400, {"error": "delete not allowed"})


def test_an_unknown_path_or_method_is_answered_in_judge0s_shape(client):
    assert client.get("/judge0/nothing").get_json() == {"status": 404, "error": "Not Found"}
    response = client.put("/judge0/submissions")
    assert response.status_code == 405 and list(response.get_json()) == ["error"]


# --- how a run is answered ------------------------------------------------------------------


def test_wait_true_answers_the_finished_run_with_the_default_fields(client, runner):
    runner.before = [RunState.QUEUED, RunState.RUNNING, RunState.RUNNING]
    body = submit(client, "?wait=true", stdin="hi")
    assert list(body) == DEFAULT_FIELDS
    assert body["stdout"] == "hi\n" and body["stderr"] is None and body["compile_output"] is None
    assert (body["time"], body["memory"], body["message"]) == ("0.012", 9216, None)
    assert body["status"] == {"id": 3, "description": "Accepted"}
    # It waited: read again until the run had finished.
    assert runner.looks == 4


def test_a_run_in_the_queue_or_running_is_status_1_or_2(client, runner):
    runner.before = [RunState.QUEUED, RunState.RUNNING]
    token = submit(client)["token"]
    first, second, third = (client.get(f"/judge0/submissions/{token}").get_json() for _ in range(3))
    assert first["status"] == {"id": 1, "description": "In Queue"}
    assert second["status"] == {"id": 2, "description": "Processing"}
    assert first["stdout"] is None and first["time"] is None
    assert third["status"]["id"] == 3


def test_every_field_with_star_in_judge0s_order(client, runner):
    body = answer(
        client,
        runner,
        ran(stage(stdout=b"hi\n")),
        "?fields=*",
        stdin="x",
        cpu_time_limit=2,
        memory_limit=4096,
        command_line_arguments="a 'b c'",
        additional_files=zipped({"in.txt": b"1"}),
    )
    assert list(body) == list(FIELDS)
    assert (
        body["source_code"] == "print(input())" and body["stdin"] == "x" and body["expected_output"] is None
    )
    assert body["language_id"] == 71 and body["language"] == {"id": 71, "name": "Python (3.11.7)"}
    assert body["status_id"] == 3
    assert (
        body["created_at"] == "2026-01-01T00:00:00.250Z" and body["finished_at"] == "2026-01-01T00:00:01.750Z"
    )
    assert (body["cpu_time_limit"], body["wall_time_limit"], body["memory_limit"]) == ("2.0", "2.0", 4096)
    assert body["max_file_size"] == 97 and body["number_of_runs"] == 1
    assert body["command_line_arguments"] == "a 'b c'"
    assert body["redirect_stderr_to_stdout"] is False and body["enable_network"] is False
    assert (body["time"], body["wall_time"], body["exit_code"], body["exit_signal"]) == (
        "0.012",
        "0.03",
        0,
        None,
    )
    with zipfile.ZipFile(io.BytesIO(base64.b64decode(body["additional_files"]))) as archive:
        assert archive.read("in.txt") == b"1"


def test_fields_asked_for_come_in_judge0s_order(client, runner):
    body = answer(client, runner, ran(stage(stdout=b"1\n")), "?fields=status,stdout,token")
    assert list(body) == ["stdout", "token", "status"]


@pytest.mark.parametrize(
    ("run", "status", "message", "exit_code", "exit_signal"),
    [
        (stage(), 3, None, 0, None),
        (stage(Status.RUNTIME_ERROR, exit_code=3), 11, "Exited with error status 3", 3, None),
        (stage(Status.RUNTIME_ERROR, exit_code=139, signal="SIGSEGV"), 7, "Caught fatal signal 11", 0, 11),
        (stage(Status.RUNTIME_ERROR, exit_code=None, signal="SIGXFSZ"), 8, "Caught fatal signal 25", 0, 25),
        (stage(Status.RUNTIME_ERROR, signal="SIGFPE"), 9, "Caught fatal signal 8", 0, 8),
        (stage(Status.RUNTIME_ERROR, signal="SIGABRT"), 10, "Caught fatal signal 6", 0, 6),
        (stage(Status.RUNTIME_ERROR, signal="SIGTERM"), 12, "Caught fatal signal 15", 0, 15),
        (stage(Status.TIMEOUT, exit_code=137, signal="SIGKILL"), 5, "Time limit exceeded (wall clock)", 0, 9),
        (stage(Status.MEMORY_LIMIT, exit_code=137, signal="SIGKILL"), 12, "Memory limit exceeded", 0, 9),
        (stage(Status.OUTPUT_LIMIT, exit_code=137, signal="SIGKILL"), 8, "Output limit exceeded", 0, 9),
        (stage(Status.OUTPUT_LIMIT, exit_code=None, message="over 97 KB"), 8, "over 97 KB", 0, None),
        (
            stage(Status.INTERNAL_ERROR, exit_code=None, message="the sandbox vanished"),
            13,
            "the sandbox vanished",
            0,
            None,
        ),
    ],
)
def test_each_end_is_judge0s_status_message_exit_code_and_signal(
    client, runner, run, status, message, exit_code, exit_signal
):
    body = answer(client, runner, ran(run), "?fields=status,message,exit_code,exit_signal")
    assert body["status"]["id"] == status
    assert (body["message"], body["exit_code"], body["exit_signal"]) == (message, exit_code, exit_signal)


@pytest.mark.parametrize(("verdict", "status"), [(Verdict.ACCEPTED, 3), (Verdict.WRONG_ANSWER, 4)])
def test_a_test_cases_verdict_is_accepted_or_wrong_answer(client, runner, verdict, status):
    body = answer(client, runner, judged(stage(stdout=b"2\n"), verdict), expected_output="3")
    assert body["status"]["id"] == status and body["stdout"] == "2\n"


def test_merged_streams_are_stdout_and_are_what_is_judged(client, runner):
    run = Stage(Status.OK, 0, None, b"a\n", b"b\n", b"b\na\n", usage=USAGE)
    body = answer(
        client,
        runner,
        judged(run, Verdict.WRONG_ANSWER),
        redirect_stderr_to_stdout=True,
        expected_output="b\na",
    )
    assert (body["stdout"], body["stderr"]) == ("b\na\n", None)
    assert body["status"]["id"] == 3


def test_a_compile_error_is_status_6_with_the_compilers_output_and_no_run(client, runner):
    compiled = stage(Status.COMPILE_ERROR, stderr=b"main.c:1: error: expected ';'\n", exit_code=1)
    body = answer(client, runner, ran(None, compiled), "?fields=*")
    assert body["status"] == {"id": 6, "description": "Compilation Error"}
    assert body["compile_output"] == "main.c:1: error: expected ';'\n"
    assert [body[name] for name in ("stdout", "stderr", "time", "memory", "exit_code", "message")] == [
        None
    ] * 6


def test_a_compile_stage_out_of_time_says_so_as_judge0_does(client, runner):
    body = answer(client, runner, ran(None, stage(Status.TIMEOUT, signal="SIGKILL")))
    assert body["status"]["id"] == 6 and body["compile_output"] == "Compilation time limit exceeded."


def test_a_compilers_warnings_stay_in_compile_output_of_a_program_that_ran(client, runner):
    body = answer(client, runner, ran(stage(stdout=b"ok\n"), stage(stderr=b"warning: unused\n")))
    assert (
        body["status"]["id"] == 3
        and body["compile_output"] == "warning: unused\n"
        and body["stdout"] == "ok\n"
    )


def test_a_run_that_could_not_be_carried_out_is_internal_error_with_the_reason(client, runner):
    runner.error = ("runtime_unavailable", "the language's image is missing")
    body = answer(client, runner, ran(None))
    assert body["status"] == {"id": 13, "description": "Internal Error"}
    assert body["message"] == "the language's image is missing"


def test_empty_outputs_are_null(client, runner):
    body = answer(client, runner, ran(stage(stdout=b"", stderr=b"")))
    assert body["stdout"] is None and body["stderr"] is None


def test_base64_encoded_true_encodes_every_text_field_and_the_message(client, runner):
    run = stage(Status.RUNTIME_ERROR, stdout=b"\xff\xfe", stderr=b"boom\n", exit_code=2)
    body = answer(client, runner, ran(run), "?base64_encoded=true&fields=stdout,stderr,message,source_code")
    assert base64.b64decode(body["stdout"]) == b"\xff\xfe"
    assert base64.b64decode(body["stderr"]) == b"boom\n"
    assert base64.b64decode(body["message"]) == b"Exited with error status 2"
    assert base64.b64decode(body["source_code"]) == b"print(input())"


def test_output_that_is_not_utf8_asks_for_base64_as_judge0_does(client, runner):
    runner.result = ran(stage(stdout=b"\xff"))
    token = submit(client)["token"]
    response = client.get(f"/judge0/submissions/{token}")
    assert (response.status_code, response.get_json()) == (400, {"error": CONVERSION_ERROR})
    # A field that is not asked for is not converted.
    assert client.get(f"/judge0/submissions/{token}?fields=status").status_code == 200
    waited = submit(client, "?wait=true")
    assert waited == {"token": waited["token"], "error": CONVERSION_ERROR}
    response = client.get(f"/judge0/submissions/batch?tokens={token}")
    assert response.status_code == 400
    assert response.get_json() == {
        "error": "some attributes for one or more submissions cannot be converted to UTF-8, "
        "use base64_encoded=true query parameter"
    }


def test_a_view_without_the_request_answers_what_it_knows():
    view = RunView("t", RunState.FINISHED, "cpp", CREATED, result=ran(stage(stdout=b"x")))
    assert outcome(view, None).status == 3
    assert requested_fields("") == tuple(DEFAULT_FIELDS)


# --- batches ----------------------------------------------------------------------------------


def test_a_batch_answers_a_token_or_the_errors_of_each_submission(client, runner):
    response = client.post(
        "/judge0/submissions/batch",
        json={
            "submissions": [
                {"language_id": 71, "source_code": "print(1)"},
                {"source_code": "print(2)"},
                "not a submission",
                {"language_id": 60, "source_code": "package main"},
            ]
        },
    )
    assert response.status_code == 201
    first, second, third, fourth = response.get_json()
    assert list(first) == ["token"] and list(fourth) == ["token"]
    assert second == {"language_id": ["can't be blank"]}
    assert third == {"error": "a submission must be a JSON object"}
    assert [request.language for request in runner.requests] == ["python", "go"]


def test_a_batch_of_only_refusals_is_422(client, runner):
    response = client.post("/judge0/submissions/batch", json={"submissions": [{"language_id": 71}]})
    assert response.status_code == 422
    assert response.get_json() == [{"source_code": ["can't be blank"]}]


def test_a_batch_is_never_waited_for_and_asking_to_is_a_clear_error(client, runner):
    runner.before = [RunState.QUEUED]
    body = {"submissions": [{"language_id": 71, "source_code": "1"}]}
    response = client.post("/judge0/submissions/batch?wait=true", json=body)
    assert response.status_code == 400 and "not allowed for a batch" in response.get_json()["error"]
    assert runner.requests == [] and runner.looks == 0
    response = client.post("/judge0/submissions/batch?wait=false", json=body)
    assert response.status_code == 201 and list(response.get_json()[0]) == ["token"]


def test_a_batch_refused_by_a_full_server_says_so_for_each_submission(client, runner):
    runner.refusal = EngineError(Kind.AT_CAPACITY, "full", retry_after=1)
    response = client.post(
        "/judge0/submissions/batch", json={"submissions": [{"language_id": 71, "source_code": "1"}]}
    )
    assert (response.status_code, response.get_json()) == (503, [{"error": "queue is full"}])


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"submissions": []}, "there should be at least one submission in a batch"),
        ({}, "there should be at least one submission in a batch"),
        ({"submissions": "x"}, "there should be at least one submission in a batch"),
        (
            {"submissions": [{"language_id": 71, "source_code": "1"}] * 21},
            "number of submissions in a batch should be less than or equal to 20",
        ),
    ],
)
def test_a_batch_of_none_or_over_20_is_400(client, runner, body, error):
    response = client.post("/judge0/submissions/batch", json=body)
    assert (response.status_code, response.get_json()) == (400, {"error": error})
    assert runner.requests == []


def test_a_batch_is_read_by_its_tokens_unknown_ones_null(client, runner):
    runner.result = ran(stage(stdout=b"1\n"))
    token = submit(client)["token"]
    unknown = str(uuid.uuid4())
    response = client.get(f"/judge0/submissions/batch?tokens={token},{unknown}&fields=stdout,status_id")
    assert response.get_json() == {"submissions": [{"stdout": "1\n", "status_id": 3}, None]}
    assert client.get("/judge0/submissions/batch?tokens=").status_code == 400
    many = ",".join([token] * 21)
    assert client.get(f"/judge0/submissions/batch?tokens={many}").status_code == 400


# --- Judge0's official SDK --------------------------------------------------------------------


@pytest.fixture
def sdk(app: Flask, monkeypatch) -> judge0.Client:
    """Judge0's own Python client, its HTTP carried to the app in this process."""
    transport = httpx.WSGITransport(app=app)
    monkeypatch.setattr(judge0.clients.httpx, "Client", functools.partial(httpx.Client, transport=transport))
    return judge0.Client("http://judge0.test/judge0")


def test_the_official_sdk_runs_a_program_and_reads_its_result(sdk, runner):
    runner.before = [RunState.QUEUED, RunState.RUNNING]
    done = judge0.run(client=sdk, source_code="print(input())", stdin="hi", language=judge0.PYTHON)
    assert done.status == judge0.Status.ACCEPTED
    assert done.stdout == "hi\n" and done.time == 0.012 and done.memory == 9216
    assert runner.requests[0].stdin == b"hi" and runner.requests[0].files[0].content == b"print(input())"


def test_the_official_sdk_runs_test_cases_as_a_batch(sdk, runner):
    runner.result = judged(stage(stdout=b"2\n"), Verdict.ACCEPTED)
    results = judge0.run(
        client=sdk,
        source_code="print(int(input()) + 1)",
        language=judge0.CPP,
        test_cases=[("1", "2"), ("2", "3")],
    )
    assert [result.status for result in results] == [judge0.Status.ACCEPTED] * 2
    assert [request.tests for request in runner.requests] == [
        (Case("1", b"1", b"2"),),
        (Case("1", b"2", b"3"),),
    ]
    assert {request.language for request in runner.requests} == {"cpp"}
