"""POST /run's bad input, answered before any sandbox is made, and the result's JSON shape."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from fakes import FakeExecutor
from flask import Flask
from flask.testing import FlaskClient

from sandbox_engine import create_app
from sandbox_engine.batch import Compare, Stage, Status, Verdict, same_output, verdict
from sandbox_engine.config import Config
from sandbox_engine.executor import Usage
from sandbox_engine.runs_api import public_stage
from sandbox_engine.worker import EXTENSION


@pytest.fixture
def app(tmp_path, executor: FakeExecutor) -> Iterator[Flask]:
    config = Config(state_dir=str(tmp_path / "state"), max_code_size=1000, max_sessions=2, memory=256 << 20)
    app = create_app(config, executor=executor)
    app.config["TESTING"] = True
    yield app
    app.extensions[EXTENSION].shutdown()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def refused(client: FlaskClient, body: dict, status: int = 400, code: str = "invalid_request") -> str:
    response = client.post("/run", json=body)
    assert response.status_code == status, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == code
    return error["message"]


OK = {"language": "python", "code": "print(1)"}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"language": "python"}, "either 'code' or 'files'"),
        ({**OK, "files": [{"content": "x"}]}, "either 'code' or 'files'"),
        ({**OK, "colour": 1}, "unknown field 'colour'"),
        ({**OK, "limits": {"timeoutMs": -1}}, "'limits.timeoutMs' must be a positive integer"),
        ({**OK, "limits": {"cpu": 1}}, "unknown field 'limits.cpu'"),
        ({**OK, "limits": {"memoryBytes": 1 << 30}}, "limits.memoryBytes 1073741824 is above this server's"),
        ({**OK, "tests": [{"stdin": "1"}] * 65}, "65 tests; at most 64"),
        ({**OK, "tests": []}, "'tests' is empty"),
        ({**OK, "tests": [{"id": "a"}, {"id": "a"}]}, "an id of its own"),
        ({**OK, "tests": [{"input": "1"}]}, "unknown field 'tests[0].input'"),
        ({**OK, "compare": "fuzzy"}, "'compare' must be"),
        ({**OK, "wait": "yes"}, "'wait' must be true or false"),
        ({**OK, "args": "-v"}, "'args' must be a list of strings"),
        ({"language": "python", "files": []}, "'files' must be a non-empty list"),
        ({"language": "python", "files": [{"content": "!!", "encoding": "base64"}]}, "not valid base64"),
        ({"language": "python", "files": [{"content": "x", "encoding": "hex"}]}, "'files[0].encoding'"),
        (
            {"language": "python", "files": [{"content": "x"}, {"name": "../etc/passwd", "content": "x"}]},
            "file name '../etc/passwd'",
        ),
        ({"language": "python", "files": [{"content": "  \n"}]}, "the entry file is empty"),
    ],
)
def test_a_malformed_run_is_400_saying_what_is_wrong(client, executor, body, says):
    assert says in refused(client, body)
    assert not executor.sandboxes


def test_an_unknown_language_is_400_unknown_language(client):
    assert "unknown language 'cobol'" in refused(
        client, {"language": "cobol", "code": "x"}, 400, "unknown_language"
    )


def test_code_over_the_limit_is_413(client):
    refused(client, {"language": "python", "code": "x" * 1001}, 413, "too_large")


def test_bad_json_and_media_type(client):
    assert client.post("/run", data="{", content_type="application/json").status_code == 400
    assert client.post("/run", data="{}", content_type="text/plain").status_code == 415


def test_an_unknown_run_is_404(client):
    response = client.get("/run/8d7e6f00-0000-4000-8000-000000000000")
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"
    assert client.get("/run/nope").status_code == 404


def test_output_that_is_not_utf8_comes_whole_as_base64():
    stage = Stage(Status.OK, 0, None, stdout=b"\xff\x00\xfe", stderr="é".encode(), usage=Usage(1, 2, 3))
    answer = public_stage(stage)
    assert answer["stdout"] is None and base64.b64decode(answer["stdoutBase64"]) == b"\xff\x00\xfe"
    assert answer["stderr"] == "é" and "stderrBase64" not in answer
    assert answer["usage"] == {"cpuTimeMs": 1, "wallTimeMs": 2, "memoryPeakBytes": 3}
    assert answer["truncated"] == {"stdout": False, "stderr": False}


def test_verdicts_compare_exactly_or_trimmed():
    ok = Stage(Status.OK, 0, stdout=b"1 2 \n3\n\n")
    assert verdict(ok, b"1 2\n3", Compare.TRIM) is Verdict.ACCEPTED
    assert verdict(ok, b"1 2\n3", Compare.EXACT) is Verdict.WRONG_ANSWER
    assert verdict(ok, None, Compare.EXACT) is Verdict.ACCEPTED
    assert verdict(Stage(Status.TIMEOUT), b"", Compare.EXACT) is Verdict.TIMEOUT
    assert same_output(b"a\r\nb", b"a\nb\n", Compare.TRIM)
