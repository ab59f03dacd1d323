"""The JSON Schemas of Piston v2's and Judge0 CE's APIs as this server answers them, for the
OpenAPI document (openapi): their bodies, their errors, and Piston's /connect messages. Names and
enumerations come from the modules that translate those APIs. Pure data.
"""

from __future__ import annotations

from .judge0_catalog import LANGUAGES as JUDGE0_LANGUAGES
from .judge0_catalog import MAX_BATCH, STATUSES
from .judge0_results import FIELDS, TEXT
from .openapi_schemas import BOOLEAN, INTEGER, SIGNAL_NAME, STRING, const_type, nullable, obj, ref
from .piston_protocol import CONSTRAINTS, ENCODINGS
from .protocol import SIGNALS

# --- Piston v2 ------------------------------------------------------------------------------------

# Piston's isolate statuses, as piston_answers reports them.
PISTON_STATUSES = ["RE", "SG", "TO", "OL", "EL", "XX"]
PISTON_LIMITS = [f"{stage}_{constraint}" for constraint in CONSTRAINTS for stage in ("compile", "run")]

PISTON_FILE = obj(
    {
        "name": STRING,
        "content": STRING,
        "encoding": {"type": "string", "enum": list(ENCODINGS), "default": "utf8"},
    },
    ("content",),
    additionalProperties=True,
)
PISTON_JOB_PROPERTIES = {
    "language": {"type": "string", "minLength": 1, "description": "a name or an alias", "examples": ["py"]},
    "version": {"type": "string", "minLength": 1, "description": "`*` or a semver range", "examples": ["*"]},
    "files": {"type": "array", "items": PISTON_FILE},
    "stdin": STRING,
    "args": {"type": "array", "items": STRING},
    **{
        name: nullable({"type": "number", "description": "-1, 0 or null: the server's own"})
        for name in PISTON_LIMITS
    },
}
PISTON_STAGE = obj(
    {
        "stdout": STRING,
        "stderr": STRING,
        "code": nullable(INTEGER),
        "signal": nullable(SIGNAL_NAME),
        "output": {"type": "string", "description": "stdout and stderr as they came"},
        "memory": nullable({**INTEGER, "description": "bytes"}),
        "message": nullable(STRING),
        "status": nullable({"type": "string", "enum": PISTON_STATUSES}),
        "cpu_time": nullable({"type": "number", "description": "ms"}),
        "wall_time": nullable({"type": "number", "description": "ms"}),
    },
    ("stdout", "stderr", "code", "signal", "output", "memory", "message", "status", "cpu_time", "wall_time"),
)
PISTON_CONNECT_CLIENT = {
    "PistonInitMessage": obj(
        {"type": const_type("init"), **PISTON_JOB_PROPERTIES},
        ("type", "language", "version", "files"),
        additionalProperties=True,
        description="first, within 5 s: one file, no args",
    ),
    "PistonDataMessage": obj(
        {"type": const_type("data"), "stream": const_type("stdin"), "data": STRING},
        ("type", "stream", "data"),
        additionalProperties=True,
    ),
    "PistonSignalMessage": obj(
        {"type": const_type("signal"), "signal": {"type": "string", "enum": list(SIGNALS)}},
        ("type", "signal"),
        additionalProperties=True,
    ),
}
PISTON_CONNECT_SERVER = {
    "PistonRuntimeMessage": obj(
        {"type": const_type("runtime"), "language": STRING, "version": STRING},
        ("type", "language", "version"),
    ),
    "PistonStageMessage": obj(
        {"type": const_type("stage"), "stage": {"type": "string", "enum": ["compile", "run"]}},
        ("type", "stage"),
    ),
    "PistonOutputMessage": obj(
        {
            "type": const_type("data"),
            "stream": {"type": "string", "enum": ["stdout", "stderr"]},
            "data": STRING,
        },
        ("type", "stream", "data"),
    ),
    "PistonExitMessage": obj(
        {
            "type": const_type("exit"),
            "stage": {"type": "string", "enum": ["compile", "run"]},
            "code": nullable(INTEGER),
            "signal": nullable(SIGNAL_NAME),
        },
        ("type", "stage", "code", "signal"),
    ),
    "PistonErrorMessage": obj(
        {"type": const_type("error"), "message": STRING},
        ("type", "message"),
        description="then a close with 4002 (or the program goes on, for a signal sent too fast)",
    ),
}

PISTON_SCHEMAS = {
    "PistonError": obj({"message": STRING}, ("message",)),
    "PistonRuntime": obj(
        {
            "language": STRING,
            "version": STRING,
            "aliases": {"type": "array", "items": STRING},
            "runtime": STRING,
        },
        ("language", "version", "aliases"),
    ),
    "PistonExecuteRequest": obj(
        PISTON_JOB_PROPERTIES, ("language", "version", "files"), additionalProperties=True
    ),
    "PistonStage": PISTON_STAGE,
    "PistonExecuteAnswer": obj(
        {"language": STRING, "version": STRING, "run": ref("PistonStage"), "compile": ref("PistonStage")},
        ("language", "version", "run"),
    ),
    **PISTON_CONNECT_CLIENT,
    **PISTON_CONNECT_SERVER,
    "PistonConnectClientMessage": {
        "oneOf": [ref(name) for name in PISTON_CONNECT_CLIENT],
        "description": "What a client sends on /api/v2/connect.",
    },
    "PistonConnectServerMessage": {
        "oneOf": [ref(name) for name in PISTON_CONNECT_SERVER],
        "description": "What the server sends on /api/v2/connect.",
    },
}

PISTON_CLOSE_CODES = """| close code | reason |
| --- | --- |
| 4000 | Already Initialized: a second init |
| 4001 | Initialization Timeout: no init within 5 s |
| 4002 | Notified Error: after an error message |
| 4003 | Not yet initialized: data or a signal before init |
| 4004 | Can only write to stdin |
| 4005 | Invalid signal |
| 4999 | Job Completed: the program is over |"""

# --- Judge0 CE ------------------------------------------------------------------------------------

# Rails takes numbers as text and text as numbers, as Judge0 does; so does this server.
LOOSE_NUMBER = {"type": ["number", "string", "null"]}
LOOSE_TEXT = {"type": ["string", "number", "null"]}
LOOSE_FLAG = {"type": ["boolean", "string", "integer", "null"]}
JUDGE0_REQUEST = obj(
    {
        "source_code": {**LOOSE_TEXT, "description": "base64 with base64_encoded=true"},
        "language_id": {
            "type": ["integer", "string"],
            "description": "Judge0 CE's ids: "
            + ", ".join(f"{entry.id} ({entry.language})" for entry in JUDGE0_LANGUAGES),
            "examples": [71],
        },
        "stdin": LOOSE_TEXT,
        "expected_output": LOOSE_TEXT,
        **{
            name: LOOSE_NUMBER
            for name in (
                "cpu_time_limit",
                "cpu_extra_time",
                "wall_time_limit",
                "memory_limit",
                "stack_limit",
                "max_processes_and_or_threads",
                "max_file_size",
                "number_of_runs",
            )
        },
        **{
            name: LOOSE_FLAG
            for name in (
                "enable_per_process_and_thread_time_limit",
                "enable_per_process_and_thread_memory_limit",
                "redirect_stderr_to_stdout",
                "enable_network",
            )
        },
        "compiler_options": {**LOOSE_TEXT, "description": "refused unless empty"},
        "command_line_arguments": LOOSE_TEXT,
        "callback_url": {**LOOSE_TEXT, "description": "refused unless empty"},
        "additional_files": nullable({"type": "string", "description": "a base64 .zip"}),
    },
    ("source_code", "language_id"),
    additionalProperties=True,
)

NULLABLE_TEXT = nullable(STRING)
NULLABLE_INTEGER = nullable(INTEGER)
_ANSWER_TYPES = {
    "language_id": NULLABLE_INTEGER,
    "status_id": INTEGER,
    "created_at": {"type": "string", "format": "date-time"},
    "finished_at": nullable({"type": "string", "format": "date-time"}),
    "time": nullable({"type": "string", "description": "CPU seconds, as a decimal"}),
    "wall_time": nullable({"type": "string", "description": "seconds, as a decimal"}),
    "memory": nullable({**INTEGER, "description": "KB"}),
    "token": STRING,
    "number_of_runs": NULLABLE_INTEGER,
    "cpu_time_limit": NULLABLE_TEXT,
    "cpu_extra_time": NULLABLE_TEXT,
    "wall_time_limit": NULLABLE_TEXT,
    "memory_limit": NULLABLE_INTEGER,
    "stack_limit": NULLABLE_INTEGER,
    "max_processes_and_or_threads": NULLABLE_INTEGER,
    "max_file_size": NULLABLE_INTEGER,
    "exit_code": NULLABLE_INTEGER,
    "exit_signal": NULLABLE_INTEGER,
    "status": obj(
        {"id": {"type": "integer", "enum": list(STATUSES)}, "description": STRING}, ("id", "description")
    ),
    "language": obj({"id": NULLABLE_INTEGER, "name": NULLABLE_TEXT}, ("id", "name")),
}
JUDGE0_SUBMISSION = obj(
    {
        name: _ANSWER_TYPES.get(
            name, NULLABLE_TEXT if name in TEXT else nullable({"type": ["string", "boolean"]})
        )
        for name in FIELDS
    },
    description="The fields asked for (?fields=, `*` for all), in Judge0's order.",
)
JUDGE0_SUBMISSION["properties"]["error"] = {"type": "string", "description": "text that is not UTF-8"}

JUDGE0_LANGUAGE = obj({"id": INTEGER, "name": STRING}, ("id", "name"))
JUDGE0_SCHEMAS = {
    "Judge0Error": obj({"error": STRING}, ("error",)),
    "Judge0NotFound": obj({"status": {"const": 404}, "error": {"const": "Not Found"}}, ("status", "error")),
    "Judge0FieldErrors": {
        "type": "object",
        "additionalProperties": {"type": "array", "items": STRING},
        "description": "Each field's errors, as Rails validates them.",
    },
    "Judge0SubmissionRequest": JUDGE0_REQUEST,
    "Judge0Submission": JUDGE0_SUBMISSION,
    "Judge0Token": obj({"token": STRING}, ("token",)),
    "Judge0BatchRequest": obj(
        {"submissions": {"type": "array", "items": ref("Judge0SubmissionRequest"), "maxItems": MAX_BATCH}},
        ("submissions",),
        additionalProperties=True,
    ),
    "Judge0BatchAnswer": {
        "type": "array",
        "items": {"anyOf": [ref("Judge0Token"), ref("Judge0FieldErrors"), ref("Judge0Error")]},
        "description": "A token, or its errors, for each submission in order.",
    },
    "Judge0Batch": obj(
        {"submissions": {"type": "array", "items": nullable(ref("Judge0Submission"))}}, ("submissions",)
    ),
    "Judge0Language": JUDGE0_LANGUAGE,
    "Judge0LanguageOfAll": obj({"id": INTEGER, "name": STRING, "is_archived": BOOLEAN}, ("id", "name")),
    "Judge0LanguageDetail": obj(
        {
            "id": INTEGER,
            "name": STRING,
            "is_archived": BOOLEAN,
            "source_file": STRING,
            "compile_cmd": NULLABLE_TEXT,
            "run_cmd": STRING,
        },
        ("id", "name", "is_archived", "source_file", "compile_cmd", "run_cmd"),
    ),
    "Judge0Status": obj(
        {"id": {"type": "integer", "enum": list(STATUSES)}, "description": STRING}, ("id", "description")
    ),
    "Judge0About": obj(
        {"version": STRING, "homepage": NULLABLE_TEXT, "source_code": NULLABLE_TEXT, "maintainer": STRING},
        ("version",),
    ),
    "Judge0ConfigInfo": {
        "type": "object",
        "additionalProperties": {"type": ["boolean", "number", "array"]},
        "required": ["max_queue_size", "cpu_time_limit", "memory_limit", "max_submission_batch_size"],
        "description": "Every key Judge0 sends, with this server's limits.",
    },
}
