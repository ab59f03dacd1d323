"""Judge0 CE's API under /judge0, so that Judge0's clients (and its official SDK, pointed at
http://host:port/judge0) run code here: submissions (one, waited for or not; batches), languages,
statuses, /about and /config_info, with Judge0's answers and errors. judge0_requests and
judge0_results translate; the runs are the batch runs' (batch.Runner).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from flask import Blueprint, current_app, request
from werkzeug.exceptions import HTTPException

from . import access
from . import judge0_catalog as catalog
from .auth import current_key
from .batch import Runner, RunRequest, RunView
from .config import Config
from .errors import EngineError, Kind, runtime_error
from .executor import ExecutorError
from .judge0_requests import Judge0Error, parse_submission
from .judge0_results import BATCH_CONVERSION_ERROR, CONVERSION_ERROR, NotUtf8, render, requested_fields
from .languages import LanguageSpec
from .protocol import ProtocolError, parse_json
from .worker import current_engine, current_runs, max_session_age

PREFIX = "/judge0"
bp = Blueprint("judge0", __name__, url_prefix=PREFIX)
# Rails' answer for a record it cannot find: Judge0's for an unknown token or language.
NOT_FOUND = {"status": 404, "error": "Not Found"}


@bp.post("/submissions")
def create_submission():
    # Judge0's order: the fields asked for are checked before the submission.
    wait = request.args.get("wait") == "true"
    encoded = _encoded()
    fields = requested_fields(request.args.get("fields"))
    run_request = parse_submission(_body(), encoded, _config(), _specs())
    runner = _runner()
    token = _submit(runner, run_request)
    if not wait:
        return {"token": token}, 201
    view = _await(runner, token)
    try:
        return _render(view, fields, encoded, _names(fields), run_request), 201
    except NotUtf8:
        return {"token": token, "error": CONVERSION_ERROR}, 201


@bp.get("/submissions/<token>")
def get_submission(token: str):
    encoded = _encoded()
    fields = requested_fields(request.args.get("fields"))
    view = _view(_runner(), token)
    try:
        return _render(view, fields, encoded, _names(fields))
    except NotUtf8:
        raise Judge0Error(400, {"error": CONVERSION_ERROR}) from None


@bp.delete("/submissions/<token>")
def delete_submission(token: str):
    # Judge0's answer while ENABLE_SUBMISSION_DELETE is off; a run's record goes with its age.
    raise Judge0Error(400, {"error": "delete not allowed"})


@bp.post("/submissions/batch")
def create_batch():
    """Each submission is taken or refused on its own: a token, or its errors. A batch is always
    answered with its tokens: where Judge0 ignores `wait=true` here, we say it cannot apply."""
    if request.args.get("wait") == "true":
        why = "wait=true is not allowed for a batch; read its tokens back with GET /submissions/batch"
        raise Judge0Error(400, {"error": why})
    encoded = _encoded()
    items = _body().get("submissions")
    _check_batch_size(len(items) if isinstance(items, list) else 0)
    answers: list[dict] = []
    statuses: list[int] = []
    for item in items:
        try:
            if not isinstance(item, dict):
                raise Judge0Error(422, {"error": "a submission must be a JSON object"})
            run_request = parse_submission(item, encoded, _config(), _specs())
            answers.append({"token": _submit(_runner(), run_request)})
            statuses.append(201)
        except Judge0Error as exc:
            answers.append(exc.body)
            statuses.append(exc.status)
    return answers, 201 if 201 in statuses else max(statuses)


@bp.get("/submissions/batch")
def get_batch():
    text = (request.headers.get("tokens") or request.args.get("tokens") or "").strip()
    tokens = text.split(",") if text else []
    while tokens and not tokens[-1]:
        tokens.pop()  # as Ruby's split, which drops trailing empty strings
    _check_batch_size(len(tokens))
    encoded = _encoded()
    fields = requested_fields(request.args.get("fields"))
    names = _names(fields)
    runner = _runner()
    answers: list[dict | None] = []
    for token in tokens:
        try:
            view = _view(runner, token)
        except Judge0Error as exc:
            if exc.status != 404:
                raise
            answers.append(None)
            continue
        try:
            answers.append(_render(view, fields, encoded, names))
        except NotUtf8:
            raise Judge0Error(400, {"error": BATCH_CONVERSION_ERROR}) from None
    return {"submissions": answers}


@bp.get("/languages")
def languages():
    return catalog.languages(_specs(), _versions())


@bp.get("/languages/all")
def all_languages():
    return [{**language, "is_archived": False} for language in catalog.languages(_specs(), _versions())]


@bp.get("/languages/<language_id>")
def language(language_id: str):
    # ASCII digits only: "¹" is a digit to str.isdigit, and no number to int().
    entry = catalog.BY_ID.get(int(language_id)) if language_id.isascii() and language_id.isdigit() else None
    specs = _specs()
    if entry is None or entry.language not in specs:
        raise Judge0Error(404, NOT_FOUND)
    return catalog.language(entry, specs[entry.language], _versions()[entry.language])


@bp.get("/statuses")
def statuses():
    return catalog.statuses()


@bp.get("/about")
def about():
    return catalog.about()


@bp.get("/version")
def version():
    return catalog.VERSION, 200, {"Content-Type": "text/plain; charset=utf-8"}


@bp.get("/config_info")
def config_info():
    return catalog.config_info(_config())


@bp.errorhandler(Judge0Error)
def judge0_error(exc: Judge0Error):
    return exc.body, exc.status, exc.headers


@bp.errorhandler(EngineError)
def engine_error(exc: EngineError):
    return judge0_error(_translated(exc))


@bp.errorhandler(ExecutorError)
def executor_error(exc: ExecutorError):
    access.refused(runtime_error(exc).kind.code)
    return {"error": str(exc)}, 503


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    """Judge0's shape for an HTTP error: an unknown path or method under /judge0 (app.py hands
    those over, as routing fails before any blueprint is chosen), a body too large."""
    if exc.code == 404:
        return NOT_FOUND, 404
    return {"error": exc.description}, exc.code or 500


@bp.errorhandler(Exception)
def unexpected(exc: Exception):
    logging.getLogger(__name__).exception("unhandled error")
    return {"error": "internal error"}, 500


def _translated(exc: EngineError) -> Judge0Error:
    """A batch run's refusal in Judge0's words."""
    access.refused(exc.kind.code)
    if exc.kind is Kind.NOT_FOUND:
        return Judge0Error(404, NOT_FOUND)
    if exc.kind is Kind.AT_CAPACITY:
        return Judge0Error(503, {"error": "queue is full"}, exc.headers)
    if exc.kind is Kind.UNKNOWN_LANGUAGE:
        return Judge0Error(422, {"language_id": [exc.message]})
    # Ours, Judge0 having none: a key's refusals (401, 403, 429), with their headers.
    return Judge0Error(exc.kind.http_status, {"error": exc.message}, exc.headers)


def _submit(runner: Runner, run_request: RunRequest) -> str:
    try:
        return runner.submit(run_request, current_key())
    except EngineError as exc:
        raise _translated(exc) from None


def _view(runner: Runner, token: str) -> RunView:
    try:
        return runner.get(token, current_key())
    except EngineError as exc:
        raise _translated(exc) from None


def _await(runner: Runner, token: str) -> RunView:
    """The run once finished, for wait=true, for at most as long as a run can last."""
    try:
        return runner.wait(token, max_session_age(_config()), current_key())
    except EngineError as exc:
        raise _translated(exc) from None


def _render(
    view: RunView,
    fields: tuple[str, ...],
    encoded: bool,
    names: Mapping[str, str],
    run_request: RunRequest | None = None,
) -> dict:
    return render(view, fields, encoded, _config(), run_request, names.get(view.language))


def _names(fields: tuple[str, ...]) -> dict[str, str]:
    """Judge0's name of each language, when the answer shows it."""
    if "language" not in fields:
        return {}
    versions = _versions()
    return {entry.language: entry.title(versions[entry.language]) for entry in catalog.served(_specs())}


def _check_batch_size(count: int) -> None:
    if count > catalog.MAX_BATCH:
        message = f"number of submissions in a batch should be less than or equal to {catalog.MAX_BATCH}"
        raise Judge0Error(400, {"error": message})
    if count == 0:
        raise Judge0Error(400, {"error": "there should be at least one submission in a batch"})


def _body() -> dict:
    """The request's body: JSON, or a form, both of which Judge0 (Rails) takes."""
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return request.form.to_dict()
    try:
        body = parse_json(request.get_data(cache=False) or b"{}")
    except ProtocolError as exc:
        raise Judge0Error(400, {"error": f"the body is {exc}"}) from None
    if not isinstance(body, dict):
        raise Judge0Error(400, {"error": "the body must be a JSON object"})
    return body


def _encoded() -> bool:
    return request.args.get("base64_encoded") == "true"


def _runner() -> Runner:
    runs = current_runs()
    if runs is None:
        raise Judge0Error(
            503, {"error": "this server does not run submissions: batch runs are not available"}
        )
    return runs


def _specs() -> Mapping[str, LanguageSpec]:
    return current_engine().catalog.languages


def _versions() -> dict[str, str]:
    """Each language's version as its image recorded it, as GET /languages reports it."""
    return {language["id"]: language["version"] for language in current_engine().catalog.public()}


def _config() -> Config:
    return current_app.config["SANDBOX"]
