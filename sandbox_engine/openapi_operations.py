"""What each route does, for the OpenAPI document (openapi): by Flask endpoint, its summary, its
request and its answers. The errors of our own API are named by error kind (openapi turns them
into responses with their status and codes); Piston's and Judge0's are given in their shapes.
The paths, parameters and security come from the app's routes and auth.ROUTES. Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import Kind
from .judge0_catalog import MAX_BATCH
from .judge0_results import FIELDS
from .openapi_compat import PISTON_CLOSE_CODES
from .openapi_schemas import close_codes, obj, ref

K = Kind


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    # Status: response object, for what the route answers besides the errors below.
    answers: dict[int, dict]
    # Our API's errors, by kind (the auth ones are added from auth.ROUTES).
    errors: tuple[Kind, ...] = ()
    # Piston's errors ({"message": ...}), by status.
    piston_errors: tuple[int, ...] = ()
    body: dict | None = None
    query: tuple[dict, ...] = ()
    description: str = ""
    extensions: dict = field(default_factory=dict)


def json(description: str, schema: dict, headers: dict | None = None) -> dict:
    answer: dict = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


def content(description: str, media_type: str, schema: dict | None = None) -> dict:
    return {"description": description, "content": {media_type: {"schema": schema or {"type": "string"}}}}


def body(schema_name: str, *, form: bool = False) -> dict:
    media = {"application/json": {"schema": ref(schema_name)}}
    if form:
        # Judge0 (Rails) takes a form as well as JSON.
        media["application/x-www-form-urlencoded"] = {"schema": ref(schema_name)}
    return {"required": True, "content": media}


def query(name: str, description: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "query", "description": description, "schema": schema or {"type": "string"}}


LOCATION = {"Location": {"description": "where the new resource is read", "schema": {"type": "string"}}}
STATUS = obj({"status": {"type": "string"}}, ("status",))
# Any bytes, of the type the file's name says (OpenAPI 3.1: a binary body has no schema type).
FILE = content("the file", "*/*", {"description": "the file's bytes"})
NOT_MODIFIED = {"description": "the copy the client has is current (If-None-Match, If-Modified-Since)"}
UPGRADED = {"description": "Switching Protocols: the WebSocket is open (GET with Upgrade: websocket)"}
SESSION_ERRORS = (K.UNKNOWN_LANGUAGE, K.TOO_LARGE, K.AT_CAPACITY, K.QUOTA_EXCEEDED, K.RUNTIME_UNAVAILABLE)
BODY_ERRORS = (K.INVALID_JSON, K.INVALID_REQUEST, K.UNSUPPORTED_MEDIA_TYPE)
SEQ_TEXT = {"type": "string", "pattern": "^[0-9]{1,18}$"}
TAKEOVER = {"type": "string", "enum": ["1", "true"]}
FROM = {"type": "string", "enum": ["start", "now"], "default": "start"}


def websocket(client: str, server: str) -> dict:
    return {"x-websocket": {"clientMessages": ref(client), "serverMessages": ref(server)}}


OURS = {
    "api.create_session": Operation(
        "Create an interactive session",
        "sessions",
        {
            201: json(
                "created; attach to /ws/session/{sessionId} to start it", ref("SessionCreated"), LOCATION
            )
        },
        BODY_ERRORS + SESSION_ERRORS,
        body=body("SessionRequest"),
    ),
    "api.get_session": Operation(
        "A session's state",
        "sessions",
        {200: json("the session's record", ref("Session"))},
        (K.NOT_FOUND,),
    ),
    "api.delete_session": Operation(
        "End a session (killed), or nothing if it has ended",
        "sessions",
        {204: {"description": "ended"}},
        (K.NOT_FOUND, K.RUNTIME_UNAVAILABLE),
    ),
    "ws.without_upgrade": Operation(
        "A session's WebSocket",
        "sessions",
        {101: UPGRADED},
        (
            K.INVALID_REQUEST,
            K.FORBIDDEN,
            K.NOT_FOUND,
            K.ALREADY_ATTACHED,
            K.SESSION_ENDED,
            K.UPGRADE_REQUIRED,
            K.RUNTIME_UNAVAILABLE,
        ),
        query=(
            query("resume", "attach again: the last seq received (0: all still held)", SEQ_TEXT),
            query("takeover", "with resume, 1: close the client attached now (4408)", TAKEOVER),
        ),
        description="Attaching starts the program. JSON text messages both ways: the client's are "
        "`SessionClientMessage`, the server's `SessionServerMessage` (components); each of the "
        "session's own messages has its `seq`, for `?resume=`. Refusals come before the upgrade as "
        "HTTP errors; a plain GET is 426. The session's id is its capability: no API key is asked "
        "for.\n\n" + close_codes(),
        extensions=websocket("SessionClientMessage", "SessionServerMessage"),
    ),
    "watch.create_watchers": Operation(
        "A watch link: the session followed read-only",
        "sessions",
        {201: json("the link's token, and the page that follows the session with it", ref("WatchLink"))},
        (K.NOT_FOUND,),
    ),
    "watch.revoke_watchers": Operation(
        "Revoke every watch link of the session, and close its watchers (4403)",
        "sessions",
        {204: {"description": "revoked"}},
        (K.NOT_FOUND,),
    ),
    "watch.without_upgrade": Operation(
        "A session's read-only WebSocket, for its watchers",
        "sessions",
        {101: UPGRADED},
        (
            K.INVALID_REQUEST,
            K.FORBIDDEN,
            K.INVALID_TOKEN,
            K.NOT_FOUND,
            K.NOT_STARTED,
            K.SESSION_ENDED,
            K.UPGRADE_REQUIRED,
            K.TOO_MANY_WATCHERS,
        ),
        query=(
            query("token", "the watch link's token (POST /session/{session_id}/watchers)"),
            query("from", "start (default): what the replay buffer holds, then live; now: live only", FROM),
        ),
        description="The session's own messages, with their `seq`, as its controller gets them: the "
        "replay (a `gap` first if the buffer lost some), then `live`, then live messages, and "
        "`watchers` counts. Anything a watcher sends is answered with an `error` of code `read_only`; "
        "the session is unaffected. A slow watcher never slows the session: past its queue's bound "
        "it gets a `gap` and goes on from what the buffer holds. Closed 1000 after the final state, "
        "4403 when the links are revoked.",
        extensions=websocket("SessionClientMessage", "SessionServerMessage"),
    ),
    "api.languages": Operation(
        "The languages offered",
        "server",
        {200: json("every language, with the version installed", ref("Languages"))},
        (K.RUNTIME_UNAVAILABLE,),
    ),
    "api.pool": Operation(
        "The warm pools' levels",
        "server",
        {200: json("each pool's size and how many sandboxes wait in it", ref("Pool"))},
        (K.RUNTIME_UNAVAILABLE,),
    ),
    "api.healthz": Operation("Liveness", "server", {200: json("the process serves", STATUS)}),
    "api.readyz": Operation(
        "Readiness: Docker answers and every image exists",
        "server",
        {200: json("ready", STATUS)},
        (K.RUNTIME_UNAVAILABLE,),
    ),
    "metrics.metrics": Operation(
        "Prometheus metrics",
        "server",
        {200: content("Prometheus' text format", "text/plain")},
    ),
    "runs.create_run": Operation(
        "Run a program (or its tests) and answer its result",
        "runs",
        {
            200: json("the result, once the program has ended", ref("RunResult")),
            202: json('queued ("wait": false); read it with GET /run/{runId}', ref("RunQueued"), LOCATION),
        },
        BODY_ERRORS + SESSION_ERRORS,
        body=body("RunRequest"),
    ),
    "runs.get_run": Operation(
        "A batch run's state and, once finished, its result",
        "runs",
        {200: json("the run", ref("RunView"))},
        (K.NOT_FOUND,),
    ),
    "ui.index": Operation("The IDE", "ui", {200: content("the IDE's page", "text/html")}),
    "ui.watch_page": Operation(
        "The IDE's page, following a shared session read-only (?token=)",
        "ui",
        {200: content("the IDE's page", "text/html")},
    ),
    "ui.bundle_file": Operation(
        "A file of the IDE's bundle (path segments allowed: chunks/...)",
        "ui",
        {200: FILE, 304: NOT_MODIFIED},
        (K.NOT_FOUND,),
    ),
    "static": Operation(
        "A file under static/ (path segments allowed)",
        "ui",
        {200: FILE, 304: NOT_MODIFIED},
        (K.NOT_FOUND,),
    ),
    "docs.openapi": Operation(
        "This document", "docs", {200: json("OpenAPI 3.1", {"type": "object", "required": ["openapi"]})}
    ),
    "docs.page": Operation(
        "This document, rendered (Swagger UI)", "docs", {200: content("the page", "text/html")}
    ),
}

PISTON = {
    "piston.list_runtimes": Operation(
        "Piston v2: the runtimes",
        "piston",
        {200: json("our languages under Piston's names", {"type": "array", "items": ref("PistonRuntime")})},
        piston_errors=(503,),
    ),
    "piston.execute": Operation(
        "Piston v2: run a program",
        "piston",
        {200: json("the run (and compile) stage", ref("PistonExecuteAnswer"))},
        piston_errors=(400, 413, 415, 429, 503),
        body=body("PistonExecuteRequest"),
    ),
    "piston_ws.without_upgrade": Operation(
        "Piston v2: the interactive WebSocket",
        "piston",
        {101: UPGRADED},
        piston_errors=(403, 426),
        description="The client's messages are `PistonConnectClientMessage`, the server's "
        "`PistonConnectServerMessage` (components); a plain GET is 426.\n\n" + PISTON_CLOSE_CODES,
        extensions=websocket("PistonConnectClientMessage", "PistonConnectServerMessage"),
    ),
}

BASE64 = query("base64_encoded", "true: text fields in and out are base64", {"type": "string"})
SHOWN = query("fields", f"the fields answered, by comma, or `*`: {', '.join(FIELDS)}")
J0_ERROR = ref("Judge0Error")


def judge0(description: str, schema: dict | None = None) -> dict:
    return json(description, schema or J0_ERROR)


JUDGE0_UNAVAILABLE = judge0("no batch runs here, the queue is full, or Docker does not answer")
JUDGE0 = {
    "judge0.create_submission": Operation(
        "Judge0: create a submission",
        "judge0",
        {
            201: judge0("its token; with wait=true the submission", ref("Judge0Submission")),
            400: judge0("fields or body refused"),
            413: judge0("the body is too large"),
            422: judge0("each field's errors", ref("Judge0FieldErrors")),
            503: JUDGE0_UNAVAILABLE,
        },
        body=body("Judge0SubmissionRequest", form=True),
        query=(BASE64, query("wait", "true: answer once it has run"), SHOWN),
    ),
    "judge0.get_submission": Operation(
        "Judge0: a submission",
        "judge0",
        {
            200: judge0("the submission", ref("Judge0Submission")),
            400: judge0("fields refused, or text that is not UTF-8"),
            404: judge0("no such token", ref("Judge0NotFound")),
            503: JUDGE0_UNAVAILABLE,
        },
        query=(BASE64, SHOWN),
    ),
    "judge0.delete_submission": Operation(
        "Judge0: delete a submission (not allowed, as ENABLE_SUBMISSION_DELETE off)",
        "judge0",
        {400: judge0("delete not allowed")},
    ),
    "judge0.create_batch": Operation(
        f"Judge0: create up to {MAX_BATCH} submissions",
        "judge0",
        {
            201: judge0("a token or the errors of each", ref("Judge0BatchAnswer")),
            400: judge0("the batch refused (size, wait=true, body)"),
            413: judge0("the body is too large"),
            **{
                status: judge0(
                    "none taken: each one's errors", {"anyOf": [ref("Judge0BatchAnswer"), J0_ERROR]}
                )
                for status in (401, 403, 422, 429, 503)
            },
        },
        body=body("Judge0BatchRequest"),
        query=(BASE64, query("wait", "true is refused for a batch")),
    ),
    "judge0.get_batch": Operation(
        "Judge0: submissions by token",
        "judge0",
        {
            200: judge0("each submission, null for an unknown token", ref("Judge0Batch")),
            400: judge0("no token, too many, fields refused, text not UTF-8"),
            503: JUDGE0_UNAVAILABLE,
        },
        query=(query("tokens", "tokens by comma (or the tokens header)"), BASE64, SHOWN),
    ),
    "judge0.languages": Operation(
        "Judge0: the languages",
        "judge0",
        {200: judge0("by name", {"type": "array", "items": ref("Judge0Language")}), 503: JUDGE0_UNAVAILABLE},
    ),
    "judge0.all_languages": Operation(
        "Judge0: every language",
        "judge0",
        {
            200: judge0("by name", {"type": "array", "items": ref("Judge0LanguageOfAll")}),
            503: JUDGE0_UNAVAILABLE,
        },
    ),
    "judge0.language": Operation(
        "Judge0: a language",
        "judge0",
        {
            200: judge0("with its source file and commands", ref("Judge0LanguageDetail")),
            404: judge0("no such language", ref("Judge0NotFound")),
            503: JUDGE0_UNAVAILABLE,
        },
    ),
    "judge0.statuses": Operation(
        "Judge0: the statuses", "judge0", {200: judge0("", {"type": "array", "items": ref("Judge0Status")})}
    ),
    "judge0.about": Operation("Judge0: about", "judge0", {200: judge0("", ref("Judge0About"))}),
    "judge0.version": Operation("Judge0: the API's version", "judge0", {200: content("", "text/plain")}),
    "judge0.config_info": Operation(
        "Judge0: this server's limits", "judge0", {200: judge0("", ref("Judge0ConfigInfo"))}
    ),
}

OPERATIONS: dict[str, Operation] = {**OURS, **PISTON, **JUDGE0}
# Routes that share their path and method with one above: the WebSocket handlers themselves.
WEBSOCKETS = {
    "ws.session_socket": "ws.without_upgrade",
    "watch.watch_socket": "watch.without_upgrade",
    "piston_ws.connect": "piston_ws.without_upgrade",
}
