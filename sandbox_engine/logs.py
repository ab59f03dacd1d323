"""The server's log on stderr: one line per event, as JSON (`--log-format json`) or as text.

Events carry their facts as fields (`event(logger, "request", status=201, ...)`): a JSON line
holds them as keys beside the time, level, logger and message; a text line appends them as
key=value. What is logged is chosen where it is logged: ids, names, numbers and reasons, never
a program's code, input or output, never a header's value.

Light on purpose: gunicorn's master loads this module (see gunicorn_conf) before it forks.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

FORMATS = ("auto", "json", "text")
# The attribute of a log record that holds an event's fields (logging's `extra`).
FIELDS = "fields"


def event(logger: logging.Logger, message: str, **fields: object) -> None:
    """One event at INFO, with its fields."""
    logger.info(message, extra={FIELDS: fields})


def resolve(log_format: str, stream: TextIO | None = None) -> str:
    """ "json" or "text": `auto` is text for a person at a terminal, JSON for everything else (a
    service manager, a container's log, a file)."""
    if log_format != "auto":
        return log_format
    stream = stream or sys.stderr
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def _time(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fields(record: logging.LogRecord) -> dict:
    return getattr(record, FIELDS, None) or {}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC), level, logger, message, pid, then the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": _time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            # Which worker: under gunicorn each writes its own lines.
            "pid": record.process,
        }
        for key, value in _fields(record).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time [pid] level logger: message key=value ...`, a traceback below when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        pairs = "".join(f" {key}={_text(value)}" for key, value in _fields(record).items())
        where = f"{_time(record)} [{record.process}] {record.levelname} {record.name}"
        line = f"{where}: {record.getMessage()}{pairs}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)


def logconfig(log_format: str) -> dict:
    """logging's dictConfig for the whole server, gunicorn's own logger included: every line on
    stderr, in one format. (gunicorn's access log is off: ours, per request, replaces it.)"""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "line", "stream": "ext://sys.stderr"}
        },
        "root": {"level": "INFO", "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
        },
    }
