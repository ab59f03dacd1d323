"""HTTP API blueprint for batch runs: POST /run and GET /run/<id>, in our own terms (see batch)."""

from __future__ import annotations

import base64
import binascii

from flask import Blueprint, request

from .api import json_object
from .auth import current_key
from .batch import (
    Compare,
    RequestLimits,
    RunRequest,
    RunResult,
    RunView,
    SourceFile,
    Stage,
    TestCase,
)
from .errors import EngineError, Kind
from .protocol import shown
from .records import iso
from .runs import MAX_TEST_BYTES
from .worker import current_runs, current_worker

bp = Blueprint("runs", __name__)

RUN_FIELDS = ("language", "code", "files", "stdin", "args", "limits", "tests", "compare", "wait")
LIMIT_FIELDS = {
    "timeoutMs": "timeout_ms",
    "memoryBytes": "memory_bytes",
    "outputBytes": "output_bytes",
    "compileTimeoutMs": "compile_timeout_ms",
    "compileMemoryBytes": "compile_memory_bytes",
}
TEST_FIELDS = ("id", "stdin", "expectedOutput")
FILE_FIELDS = ("name", "content", "encoding")


@bp.post("/run")
def create_run():
    config = current_worker().engine.config
    # Code and every test's input and expected output, JSON-escaped (at most 6 bytes a byte).
    request.max_content_length = (config.max_code_size + MAX_TEST_BYTES) * 6 + 65536
    body = json_object()
    run_request, wait = parse_run(body)
    runs = current_runs()
    if not wait:
        run_id = runs.submit(run_request, current_key())
        return {"runId": run_id, "state": "queued"}, 202, {"Location": f"/run/{run_id}"}
    return public_result(runs.run(run_request, current_key()))


@bp.get("/run/<run_id>")
def get_run(run_id: str):
    return public_view(current_runs().get(run_id, current_key()))


def parse_run(body: dict) -> tuple[RunRequest, bool]:
    """Our JSON request as a RunRequest, and whether to wait for it; EngineError if malformed."""
    _known(body, RUN_FIELDS, "")
    language = body.get("language")
    if not isinstance(language, str) or not language:
        raise EngineError(Kind.INVALID_REQUEST, "'language' must be a non-empty string")
    if ("code" in body) == ("files" in body):
        raise EngineError(Kind.INVALID_REQUEST, "give either 'code' or 'files'")
    if "code" in body:
        code = body["code"]
        if not isinstance(code, str):
            raise EngineError(Kind.INVALID_REQUEST, "'code' must be a string")
        files: tuple[SourceFile, ...] = (SourceFile("", code.encode("utf-8", "surrogatepass")),)
    else:
        files = _files(body["files"])
    tests = body.get("tests")
    compare = body.get("compare", "exact")
    if compare not in tuple(Compare):
        raise EngineError(Kind.INVALID_REQUEST, '\'compare\' must be "exact" or "trim"')
    wait = body.get("wait", True)
    if not isinstance(wait, bool):
        raise EngineError(Kind.INVALID_REQUEST, "'wait' must be true or false")
    args = body.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise EngineError(Kind.INVALID_REQUEST, "'args' must be a list of strings")
    return (
        RunRequest(
            language=language,
            files=files,
            stdin=_text(body.get("stdin", ""), "stdin"),
            args=tuple(args),
            limits=_limits(body.get("limits", {})),
            tests=None if tests is None else _tests(tests),
            compare=Compare(compare),
        ),
        wait,
    )


def _known(body: dict, fields: tuple[str, ...], where: str) -> None:
    unknown = [name for name in body if name not in fields]
    if unknown:
        raise EngineError(
            Kind.INVALID_REQUEST,
            f"unknown field {shown(where + unknown[0])}; the fields are {', '.join(fields)}",
        )


def _text(value: object, name: str) -> bytes:
    if not isinstance(value, str):
        raise EngineError(Kind.INVALID_REQUEST, f"'{name}' must be a string")
    return value.encode("utf-8", "surrogatepass")


def _files(value: object) -> tuple[SourceFile, ...]:
    if not isinstance(value, list) or not value:
        raise EngineError(Kind.INVALID_REQUEST, "'files' must be a non-empty list")
    files = []
    for index, item in enumerate(value):
        where = f"files[{index}]."
        if not isinstance(item, dict):
            raise EngineError(Kind.INVALID_REQUEST, f"'files[{index}]' must be an object")
        _known(item, FILE_FIELDS, where)
        name = item.get("name", "")
        if not isinstance(name, str) or (index and not name):
            raise EngineError(Kind.INVALID_REQUEST, f"'{where}name' must be a file name")
        encoding = item.get("encoding", "utf8")
        content = item.get("content")
        if not isinstance(content, str):
            raise EngineError(Kind.INVALID_REQUEST, f"'{where}content' must be a string")
        if encoding == "utf8":
            data = content.encode("utf-8", "surrogatepass")
        elif encoding == "base64":
            try:
                data = base64.b64decode(content, validate=True)
            except (binascii.Error, ValueError):
                raise EngineError(Kind.INVALID_REQUEST, f"'{where}content' is not valid base64") from None
        else:
            raise EngineError(Kind.INVALID_REQUEST, f'\'{where}encoding\' must be "utf8" or "base64"')
        files.append(SourceFile(name, data))
    return tuple(files)


def _limits(value: object) -> RequestLimits:
    if not isinstance(value, dict):
        raise EngineError(Kind.INVALID_REQUEST, "'limits' must be an object")
    _known(value, tuple(LIMIT_FIELDS), "limits.")
    for name, number in value.items():
        if isinstance(number, bool) or not isinstance(number, int) or number <= 0:
            raise EngineError(Kind.INVALID_REQUEST, f"'limits.{name}' must be a positive integer")
    return RequestLimits(**{LIMIT_FIELDS[name]: number for name, number in value.items()})


def _tests(value: object) -> tuple[TestCase, ...]:
    if not isinstance(value, list):
        raise EngineError(Kind.INVALID_REQUEST, "'tests' must be a list")
    tests = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise EngineError(Kind.INVALID_REQUEST, f"'tests[{index}]' must be an object")
        _known(item, TEST_FIELDS, f"tests[{index}].")
        test_id = item.get("id", str(index + 1))
        if isinstance(test_id, bool) or not isinstance(test_id, str | int):
            raise EngineError(Kind.INVALID_REQUEST, f"'tests[{index}].id' must be a string or a number")
        expected = item.get("expectedOutput")
        if expected is not None:
            expected = _text(expected, f"tests[{index}].expectedOutput")
        stdin = _text(item.get("stdin", ""), f"tests[{index}].stdin")
        tests.append(TestCase(id=str(test_id), stdin=stdin, expected_output=expected))
    return tuple(tests)


# --- answers ------------------------------------------------------------------------------------


def public_result(result: RunResult) -> dict:
    answer: dict = {
        "language": result.language,
        "version": result.version,
        "compile": public_stage(result.compile),
    }
    if result.tests is None:
        answer["run"] = public_stage(result.run)
    else:
        answer["tests"] = [
            {"id": test.id, "verdict": test.verdict, **public_stage(test.stage)} for test in result.tests
        ]
    return answer


def public_stage(stage: Stage | None) -> dict | None:
    if stage is None:
        return None
    answer: dict = {"status": stage.status, "exitCode": stage.exit_code, "signal": stage.signal}
    for name, data in (("stdout", stage.stdout), ("stderr", stage.stderr)):
        try:
            answer[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            # Bytes that are not text come whole, as base64, never mangled.
            answer[name] = None
            answer[name + "Base64"] = base64.b64encode(data).decode()
    answer["truncated"] = {"stdout": stage.truncated_stdout, "stderr": stage.truncated_stderr}
    answer["usage"] = stage.usage.public() if stage.usage is not None else None
    if stage.message:
        answer["message"] = stage.message
    return answer


def public_view(view: RunView) -> dict:
    answer: dict = {
        "runId": view.run_id,
        "state": view.state,
        "language": view.language,
        "createdAt": iso(view.created_at),
    }
    if view.result is not None:
        answer.update(public_result(view.result))
    if view.error is not None:
        answer["error"] = {"code": view.error[0], "message": view.error[1]}
    return answer
