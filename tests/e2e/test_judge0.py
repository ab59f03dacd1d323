"""Judge0 CE's API (/judge0) through the real server, driven by Judge0's official Python SDK
(`judge0` on PyPI) as its users drive it, and by plain HTTP where the SDK hides the answer.
"""

from __future__ import annotations

import base64
import time
import uuid

import judge0
import pytest
import requests
from judge0 import File, Filesystem, Status

# Every test here runs a real server on the real Docker daemon.
pytestmark = [pytest.mark.docker, pytest.mark.slow]

CONVERSION_ERROR = (
    "some attributes for this submission cannot be converted to UTF-8, "
    "use base64_encoded=true query parameter"
)


@pytest.fixture
def api(server) -> str:
    return f"{server.url}/judge0"


@pytest.fixture
def client(api) -> judge0.Client:
    """Judge0's own client, pointed at us: it reads /languages and /config_info as it starts. Its
    waits are bounded, where its default waits for ever."""
    return judge0.Client(api, retry_strategy=judge0.MaxWaitTime(90))


@pytest.fixture
def runs(api) -> None:
    """For the tests that run code: the server's batch runs must be there to run it."""
    response = requests.get(f"{api}/submissions/{uuid.uuid4()}", timeout=10)
    if response.status_code == 503 and "not available" in response.text:
        pytest.fail("this server has no batch runs (Worker.runs): the Judge0 API cannot run code")
    assert response.status_code == 404, response.text


def test_the_sdk_starts_on_our_languages_statuses_and_limits(client, server):
    python = client.get_language(71)
    assert python.name.startswith("Python (3.11.") and python.source_file == "main.py"
    assert {language.id for language in client.languages} >= {46, 50, 54, 60, 62, 63, 71, 73, 74}
    assert client.is_language_supported(judge0.PYTHON) and client.is_language_supported(judge0.CPP)
    # The server's own limits (the suite's server: --run-timeout 12, --output-limit 100000).
    assert client.config.max_cpu_time_limit == client.config.max_wall_time_limit == 12.0
    assert client.config.max_max_file_size == 100000 // 1024
    assert len(client.get_statuses()) == 14
    assert client.version == "1.13.1"


def test_a_submission_judge0_would_refuse_is_422_by_field(api):
    too_much = {"language_id": 71, "source_code": "print(1)", "memory_limit": 10**9, "cpu_time_limit": 99}
    response = requests.post(f"{api}/submissions", json=too_much, timeout=10)
    assert response.status_code == 422
    errors = response.json()
    assert errors["memory_limit"][0].startswith("must be less than or equal to ")
    assert errors["cpu_time_limit"] == ["must be less than or equal to 12.0"]
    response = requests.post(f"{api}/submissions", json={"language_id": 9999, "source_code": "x"}, timeout=10)
    assert (response.status_code, response.json()) == (
        422,
        {"language_id": ["language with id 9999 doesn't exist"]},
    )


def test_a_program_runs_and_is_waited_for(client, runs):
    done = judge0.run(
        client=client,
        source_code="name = input()\nprint('Hello', name)\n",
        stdin="Ada",
        language=judge0.PYTHON,
    )
    assert done.status == Status.ACCEPTED
    assert done.stdout == "Hello Ada\n" and done.stderr is None
    assert done.exit_code == 0 and done.time is not None and done.memory > 0
    assert done.finished_at >= done.created_at


def test_wait_true_answers_the_result_and_its_token_reads_it_again(api, runs):
    response = requests.post(
        f"{api}/submissions?wait=true", json={"language_id": 71, "source_code": "print(6 * 7)"}, timeout=60
    )
    assert response.status_code == 201
    body = response.json()
    assert list(body) == [
        "token",
        "time",
        "memory",
        "stdout",
        "stderr",
        "compile_output",
        "message",
        "status",
    ]
    assert body["stdout"] == "42\n" and body["status"] == {"id": 3, "description": "Accepted"}
    again = requests.get(f"{api}/submissions/{body['token']}?fields=stdout,status_id,language_id", timeout=10)
    assert again.json() == {"language_id": 71, "stdout": "42\n", "status_id": 3}


def test_submissions_created_at_once_and_waited_for_later(client, runs):
    created = judge0.async_run(client=client, source_code="print('later')", language=judge0.PYTHON)
    assert created.token is not None
    done = judge0.wait(client=client, submissions=created)
    assert done.status == Status.ACCEPTED and done.stdout == "later\n"


def test_test_cases_go_as_a_batch_and_each_is_judged(client, runs):
    results = judge0.run(
        client=client,
        source_code="print(int(input()) * 2)",
        language=judge0.PYTHON,
        test_cases=[("2", "4"), ("3", "7"), ("5", "10\n\n"), ("x", "")],
    )
    assert [result.status for result in results] == [
        Status.ACCEPTED,
        Status.WRONG_ANSWER,
        # Judge0 compares without trailing blanks.
        Status.ACCEPTED,
        Status.RUNTIME_ERROR_NZEC,
    ]
    assert "ValueError" in results[3].stderr


def test_base64_carries_output_that_is_not_utf8(api, client, runs):
    source = "import sys\nsys.stdout.buffer.write(b'\\xff\\xfe\\n')\n"
    done = judge0.run(client=client, source_code=source, language=judge0.PYTHON)
    assert done.status == Status.ACCEPTED and done.stdout == "\\xff\\xfe\n"
    token = str(done.token)
    encoded = requests.get(f"{api}/submissions/{token}?base64_encoded=true", timeout=10).json()
    assert base64.b64decode(encoded["stdout"]) == b"\xff\xfe\n"
    response = requests.get(f"{api}/submissions/{token}", timeout=10)
    assert (response.status_code, response.json()) == (400, {"error": CONVERSION_ERROR})


def test_a_compile_error_is_status_6_with_the_compilers_words(client, runs):
    done = judge0.run(client=client, source_code="int main(void) { return nope; }\n", language=judge0.C)
    assert done.status == Status.COMPILATION_ERROR
    assert "nope" in done.compile_output and done.stdout is None and done.time is None


def test_cpp_under_the_sdks_own_id_compiles_and_runs(client, runs):
    source = (
        '#include <iostream>\nint main() { int a, b; std::cin >> a >> b; std::cout << a + b << "\\n"; }\n'
    )
    done = judge0.run(client=client, source_code=source, stdin="2 40", language=judge0.CPP)
    assert done.status == Status.ACCEPTED and done.stdout == "42\n"


def test_a_time_limit_ends_the_program_as_time_limit_exceeded(client, runs):
    started = time.monotonic()
    done = judge0.run(
        client=client, source_code="while True:\n    pass\n", language=judge0.PYTHON, cpu_time_limit=1
    )
    assert done.status == Status.TIME_LIMIT_EXCEEDED
    assert time.monotonic() - started < 10


def test_an_exit_code_is_a_runtime_error_nzec(client, runs):
    done = judge0.run(client=client, source_code="import sys\nsys.exit(3)\n", language=judge0.PYTHON)
    assert done.status == Status.RUNTIME_ERROR_NZEC
    # Judge0 base64-encodes the message too (the SDK asks for base64, and leaves it encoded).
    assert done.exit_code == 3 and base64.b64decode(done.message) == b"Exited with error status 3"


def test_additional_files_sit_beside_the_source(client, runs):
    helper = Filesystem(content=[File(name="helper.py", content="ANSWER = 42\n")])
    done = judge0.run(
        client=client,
        source_code="import helper\nprint(helper.ANSWER)\n",
        language=judge0.PYTHON,
        additional_files=helper,
    )
    assert done.status == Status.ACCEPTED and done.stdout == "42\n"


def test_arguments_and_merged_streams(client, runs):
    source = "import sys\nprint(sys.argv[1:])\nprint('oops', file=sys.stderr)\n"
    done = judge0.run(
        client=client,
        source_code=source,
        language=judge0.PYTHON,
        command_line_arguments="a 'b c'",
        redirect_stderr_to_stdout=True,
    )
    assert done.status == Status.ACCEPTED
    assert done.stdout == "['a', 'b c']\noops\n" and done.stderr is None


def test_an_unknown_token_is_404(api, runs):
    response = requests.get(f"{api}/submissions/{uuid.uuid4()}", timeout=10)
    assert (response.status_code, response.json()) == (404, {"status": 404, "error": "Not Found"})
