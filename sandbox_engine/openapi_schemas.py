"""The JSON Schemas of our own API's bodies and of /ws/session's messages, for the OpenAPI
document (openapi). Enumerations come from the modules that own them (languages, states, batch,
protocol, errors), so a new language, state, status or signal is described without a word here.
Pure data.
"""

from __future__ import annotations

from .batch import Compare, RunState, Status, Verdict
from .errors import Kind
from .languages import LANGUAGES
from .protocol import MAX_COLS, MAX_ROWS, SIGNALS
from .runs import MAX_ARGS, MAX_FILES, MAX_TESTS
from .runs_api import LIMIT_FIELDS
from .states import Reason, State


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict, required: tuple[str, ...] | list[str] = (), **more) -> dict:
    """An object with exactly these properties (unless `additionalProperties` says otherwise)."""
    schema: dict = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    schema.update(more)
    return schema


def nullable(schema: dict) -> dict:
    if "$ref" in schema or "oneOf" in schema:
        return {"oneOf": [schema, {"type": "null"}]}
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    schema = {**schema, "type": [*types, "null"]}
    if "enum" in schema:
        schema["enum"] = [*schema["enum"], None]
    return schema


def const_type(name: str) -> dict:
    return {"type": "string", "const": name}


STRING = {"type": "string"}
INTEGER = {"type": "integer"}
BOOLEAN = {"type": "boolean"}
TIME = {"type": "string", "format": "date-time"}
SIGNAL_NAME = {"type": "string", "description": "the signal that ended the program, as SIGKILL"}


def error_schema(codes: list[str]) -> dict:
    """Our error envelope, with the codes a response may carry."""
    return obj(
        {
            "error": obj(
                {"code": {"type": "string", "enum": codes}, "message": {"type": "string", "minLength": 1}},
                ("code", "message"),
            )
        },
        ("error",),
    )


USAGE = obj(
    {
        "cpuTimeMs": {"type": "number", "minimum": 0},
        "wallTimeMs": {"type": "number", "minimum": 0},
        "memoryPeakBytes": {"type": "integer", "minimum": 0},
    },
    ("cpuTimeMs", "wallTimeMs", "memoryPeakBytes"),
    description="What the program used, measured by the kernel (the launcher's wait4).",
)

SESSION_REQUEST = obj(
    {
        "language": {"type": "string", "minLength": 1, "examples": ["python"]},
        "code": {"type": "string", "description": "the program; not blank", "examples": ["print(6*7)"]},
        "tty": {**BOOLEAN, "default": False, "description": "run on a pseudo-terminal"},
        "cols": {**INTEGER, "minimum": 1, "maximum": MAX_COLS, "default": 80, "description": "needs tty"},
        "rows": {**INTEGER, "minimum": 1, "maximum": MAX_ROWS, "default": 24, "description": "needs tty"},
        "mergeStderr": {**BOOLEAN, "default": False, "description": "one pipe for stdout and stderr"},
    },
    ("language", "code"),
)

SESSION = obj(
    {
        "sessionId": {"type": "string", "format": "uuid"},
        "language": STRING,
        "state": {"type": "string", "enum": list(State)},
        "exitCode": nullable(INTEGER),
        "reason": nullable({"type": "string", "enum": list(Reason)}),
        "signal": nullable(SIGNAL_NAME),
        "createdAt": TIME,
        "startedAt": nullable(TIME),
        "endedAt": nullable(TIME),
        "usage": nullable(ref("Usage")),
    },
    ("sessionId", "language", "state", "exitCode", "reason", "signal", "createdAt", "startedAt", "endedAt"),
)

LANGUAGE = obj(
    {
        "id": {"type": "string", "enum": list(LANGUAGES)},
        "name": STRING,
        "version": {"type": "string", "description": "as the image's build recorded it"},
        "extensions": {"type": "array", "items": STRING},
        "editorMode": STRING,
        "example": STRING,
        "sourceFile": STRING,
    },
    ("id", "name", "version", "extensions", "editorMode", "example", "sourceFile"),
)

POOL_LEVEL = obj(
    {
        "language": STRING,
        "tty": BOOLEAN,
        "size": {**INTEGER, "minimum": 0},
        "warm": {**INTEGER, "minimum": 0},
    },
    ("language", "tty", "size", "warm"),
)

TEXT = {"type": "string", "description": "UTF-8 text"}
RUN_FILE = obj(
    {
        "name": {"type": "string", "description": "a relative path; the first file's is ignored"},
        "content": STRING,
        "encoding": {"type": "string", "enum": ["utf8", "base64"], "default": "utf8"},
    },
    ("content",),
)
RUN_TEST = obj(
    {
        "id": {"type": ["string", "integer"], "description": "its position (from 1) by default"},
        "stdin": TEXT,
        "expectedOutput": TEXT,
    },
)
RUN_REQUEST = obj(
    {
        "language": {"type": "string", "minLength": 1, "examples": ["python"]},
        "code": STRING,
        "files": {"type": "array", "items": RUN_FILE, "minItems": 1, "maxItems": MAX_FILES},
        "stdin": TEXT,
        "args": {"type": "array", "items": STRING, "maxItems": MAX_ARGS},
        "limits": obj(
            {name: {**INTEGER, "minimum": 1} for name in LIMIT_FIELDS},
            description="each lowers the server's own for this request; above it is refused",
        ),
        "tests": {"type": "array", "items": RUN_TEST, "minItems": 1, "maxItems": MAX_TESTS},
        "compare": {"type": "string", "enum": list(Compare), "default": "exact"},
        "wait": {**BOOLEAN, "default": True, "description": "false: answer 202 at once"},
    },
    ("language",),
    oneOf=[{"required": ["code"]}, {"required": ["files"]}],
)


def stage_properties() -> dict:
    return {
        "status": {"type": "string", "enum": list(Status)},
        "exitCode": nullable(INTEGER),
        "signal": nullable(SIGNAL_NAME),
        "stdout": nullable({**TEXT, "description": "null when not UTF-8: see stdoutBase64"}),
        "stderr": nullable({**TEXT, "description": "null when not UTF-8: see stderrBase64"}),
        "stdoutBase64": {"type": "string", "contentEncoding": "base64"},
        "stderrBase64": {"type": "string", "contentEncoding": "base64"},
        "truncated": obj({"stdout": BOOLEAN, "stderr": BOOLEAN}, ("stdout", "stderr")),
        "usage": nullable(ref("Usage")),
        "message": STRING,
    }


STAGE_REQUIRED = ("status", "exitCode", "signal", "stdout", "stderr", "truncated", "usage")
STAGE = obj(stage_properties(), STAGE_REQUIRED)
TEST_RESULT = obj(
    {"id": STRING, "verdict": {"type": "string", "enum": list(Verdict)}, **stage_properties()},
    ("id", "verdict", *STAGE_REQUIRED),
)
RESULT_PROPERTIES = {
    "language": STRING,
    "version": STRING,
    "compile": nullable(ref("Stage")),
    # null when the compile stage failed
    "run": nullable(ref("Stage")),
    "tests": {"type": "array", "items": ref("TestResult")},
}
RUN_RESULT = obj(
    RESULT_PROPERTIES,
    ("language", "version", "compile"),
    oneOf=[{"required": ["run"]}, {"required": ["tests"]}],
)
RUN_VIEW = obj(
    {
        "runId": STRING,
        "state": {"type": "string", "enum": list(RunState)},
        "createdAt": TIME,
        **RESULT_PROPERTIES,
        "error": ref("Error/properties/error"),
    },
    ("runId", "state", "language", "createdAt"),
    description="Once finished: the result's fields, or an error.",
)
RUN_QUEUED = obj({"runId": STRING, "state": {"type": "string", "const": "queued"}}, ("runId", "state"))


# --- /ws/session/<id>: the messages -----------------------------------------------------------

CLIENT_MESSAGES = {
    "InputMessage": obj(
        {"type": const_type("input"), "data": {"type": "string", "description": "to the program's stdin"}},
        ("type", "data"),
    ),
    "EofMessage": obj({"type": const_type("eof")}, ("type",), description="closes the program's stdin"),
    "DetachMessage": obj(
        {"type": const_type("detach")},
        ("type",),
        description="leave the program running for the reconnect grace; resume with ?resume=",
    ),
    "KillMessage": obj({"type": const_type("kill")}, ("type",), description="ends the program"),
    "SignalMessage": obj(
        {"type": const_type("signal"), "signal": {"type": "string", "enum": list(SIGNALS)}},
        ("type", "signal"),
    ),
    "ResizeMessage": obj(
        {
            "type": const_type("resize"),
            "cols": {**INTEGER, "minimum": 1, "maximum": MAX_COLS},
            "rows": {**INTEGER, "minimum": 1, "maximum": MAX_ROWS},
        },
        ("type", "cols", "rows"),
        description="a tty session's terminal size",
    ),
}
# Unknown fields of a client message are ignored; the schemas say what a client should send.
for _schema in CLIENT_MESSAGES.values():
    _schema["additionalProperties"] = True

# Every message of the session's own carries its number, for a client that resumes.
SEQ = {"type": "integer", "minimum": 1, "description": "1, 2, 3, ... per session"}
SERVER_MESSAGES = {
    "StateMessage": obj(
        {
            "type": const_type("state"),
            "state": {"type": "string", "enum": [s.value for s in State if not s.final and s != "CREATED"]},
            "seq": SEQ,
        },
        ("type", "state", "seq"),
    ),
    "FinalStateMessage": obj(
        {
            "type": const_type("state"),
            "state": {"type": "string", "enum": [s.value for s in State if s.final]},
            "exitCode": nullable(INTEGER),
            "reason": {"type": "string", "enum": list(Reason)},
            "signal": nullable(SIGNAL_NAME),
            "usage": nullable(ref("Usage")),
            "seq": SEQ,
        },
        ("type", "state", "exitCode", "reason", "signal", "usage", "seq"),
        description="the last message; a close (1000) follows",
    ),
    "OutputMessage": obj(
        {
            "type": {"type": "string", "enum": ["stdout", "stderr"]},
            "data": {"type": "string", "minLength": 1},
            "seq": SEQ,
        },
        ("type", "data", "seq"),
    ),
    "GapMessage": obj(
        {"type": const_type("gap"), "from": SEQ, "to": SEQ},
        ("type", "from", "to"),
        description="on a resume: messages from..to are no longer held; the next one is to + 1",
    ),
    "ErrorMessage": obj(
        {
            "type": const_type("error"),
            "message": {"type": "string", "minLength": 1},
            "code": {
                "type": "string",
                "enum": ["read_only"],
                "description": "read_only: a watcher sent something (a watch takes nothing)",
            },
        },
        ("type", "message"),
        description="a client message the server could not use; the session carries on (no seq)",
    ),
    "LiveMessage": obj(
        {"type": const_type("live")},
        ("type",),
        description="after a resume's or a watch's replay (also an empty one): what follows is live (no seq)",
    ),
    "WatchersMessage": obj(
        {"type": const_type("watchers"), "count": {"type": "integer", "minimum": 0}},
        ("type", "count"),
        description="the session's watchers now, to everyone attached when it changes (no seq, never "
        "replayed; a resume or a watch is sent the count after `live` when there are any)",
    ),
}
WATCH_LINK = obj(
    {
        "watchToken": {"type": "string", "minLength": 1},
        "url": {"type": "string", "description": "the read-only page: <root>watch/<id>?token=<token>"},
    },
    ("watchToken", "url"),
)


def close_codes() -> str:
    """The close codes of /ws/session, from the error kinds, as a Markdown table."""
    rows = [
        "| close code | error code |",
        "| --- | --- |",
        "| 1000 | the program ended (after its final state) |",
    ]
    seen: dict[int, list[str]] = {}
    for kind in Kind:
        seen.setdefault(kind.close_code, []).append(f"`{kind.code}`")
    rows += [f"| {code} | {', '.join(codes)} |" for code, codes in sorted(seen.items())]
    return "\n".join(rows)


SCHEMAS = {
    "Usage": USAGE,
    "SessionRequest": SESSION_REQUEST,
    "SessionCreated": obj({"sessionId": {"type": "string", "format": "uuid"}}, ("sessionId",)),
    "Session": SESSION,
    "Language": LANGUAGE,
    "Languages": obj({"languages": {"type": "array", "items": ref("Language")}}, ("languages",)),
    "Pool": obj({"pool": {"type": "array", "items": POOL_LEVEL}}, ("pool",)),
    "RunRequest": RUN_REQUEST,
    "Stage": STAGE,
    "TestResult": TEST_RESULT,
    "RunResult": RUN_RESULT,
    "RunView": RUN_VIEW,
    "RunQueued": RUN_QUEUED,
    "WatchLink": WATCH_LINK,
    **CLIENT_MESSAGES,
    **SERVER_MESSAGES,
    "SessionClientMessage": {
        "oneOf": [ref(name) for name in CLIENT_MESSAGES],
        "description": "What a client sends on /ws/session/{session_id}: JSON text messages.",
    },
    "SessionServerMessage": {
        "oneOf": [ref(name) for name in SERVER_MESSAGES],
        "description": "What the server sends on /ws/session/{session_id}: JSON text messages.",
    },
}
