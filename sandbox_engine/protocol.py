"""The WebSocket wire protocol: JSON text messages in both directions."""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass

from .executor import Usage
from .states import Reason, State, signal_name


class ProtocolError(ValueError):
    """A client message the server cannot use; answered with an `error` message."""


@dataclass(frozen=True)
class Input:
    data: bytes


@dataclass(frozen=True)
class Eof:
    pass


@dataclass(frozen=True)
class Kill:
    pass


@dataclass(frozen=True)
class Resize:
    cols: int
    rows: int


@dataclass(frozen=True)
class Signal:
    name: str


ClientMessage = Input | Eof | Kill | Resize | Signal

SIGNALS = ("SIGINT", "SIGTERM", "SIGKILL", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2")
MAX_COLS, MAX_ROWS = 1000, 500
# No field of ours needs more digits; longer numbers are refused before Python converts them.
MAX_DIGITS = 100
# The most of a client's own text an error message quotes back.
QUOTE = 40


def parse_json(raw: str | bytes) -> object:
    """A client's JSON, or ProtocolError for anything that is not plain JSON.

    Refused as well as syntax errors: NaN and Infinity (not JSON), integers over MAX_DIGITS
    digits (Python's own limit raises a ValueError with no `msg`), and nesting deep enough to
    exhaust the recursion limit (a RecursionError would otherwise escape as a crash).
    """
    try:
        return json.loads(raw, parse_constant=_no_constant, parse_int=_bounded_int)
    except ProtocolError:
        raise
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise ProtocolError("not valid JSON: nested too deeply") from None
    except ValueError:  # bytes that are not UTF-8, -16 or -32
        raise ProtocolError("not valid JSON: not UTF-8 text") from None


def _no_constant(name: str) -> object:
    raise ProtocolError(f"not valid JSON: {name} is not a JSON number")


def _bounded_int(text: str) -> int:
    if len(text) > MAX_DIGITS:
        raise ProtocolError(f"not valid JSON: a number of {len(text)} digits (at most {MAX_DIGITS})")
    return int(text)


def shown(value: object) -> str:
    """A client's value as an error message shows it: a short prefix of a string, the kind of a
    container, never the whole of what a client sent."""
    if isinstance(value, str):
        return repr(value[:QUOTE]) + ("..." if len(value) > QUOTE else "")
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    text = json.dumps(value)  # null, true, false, or a number of at most MAX_DIGITS digits
    return text[:QUOTE] + ("..." if len(text) > QUOTE else "")


def check_size(cols: object, rows: object) -> tuple[int, int]:
    """A terminal size from a client, or ProtocolError: whole numbers, neither zero nor absurd.

    JSON does not tell 80 from 80.0, so a float with nothing after the point counts as whole;
    true and false do not count as numbers.
    """
    size = []
    for name, value, most in (("cols", cols, MAX_COLS), ("rows", rows, MAX_ROWS)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
            raise ProtocolError(f"'{name}' must be a whole number from 1 to {most}")
        size.append(value)
    return size[0], size[1]


def parse_client_message(raw: str | bytes) -> ClientMessage:
    if isinstance(raw, bytes):
        raise ProtocolError("binary messages are not supported; send JSON text")
    message = parse_json(raw)
    if not isinstance(message, dict):
        raise ProtocolError("a message must be a JSON object with a 'type'")
    kind = message.get("type")
    if kind == "input":
        data = message.get("data")
        if not isinstance(data, str):
            raise ProtocolError("'input' needs a string 'data'")
        try:
            return Input(data.encode("utf-8"))
        except UnicodeEncodeError as exc:
            # A lone half of a surrogate pair is no character: there are no UTF-8 bytes to send.
            raise ProtocolError(
                f"'data' holds a lone surrogate at {exc.start}; send whole characters"
            ) from None
    if kind == "eof":
        return Eof()
    if kind == "kill":
        return Kill()
    if kind == "resize":
        return Resize(*check_size(message.get("cols"), message.get("rows")))
    if kind == "signal":
        name = message.get("signal")
        if name not in SIGNALS:
            raise ProtocolError(f"unknown signal {shown(name)}; one of {', '.join(SIGNALS)}")
        return Signal(name)
    raise ProtocolError(f"unknown message type {shown(kind)}; expected input, eof, kill, resize or signal")


def encode(message: dict) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def state_message(
    state: State, exit_code: int | None = None, reason: Reason | None = None, usage: Usage | None = None
) -> dict:
    message: dict = {"type": "state", "state": state}
    if state.final:
        message["exitCode"] = exit_code
        message["reason"] = reason
        message["signal"] = signal_name(exit_code)
        message["usage"] = usage.public() if usage is not None else None
    return message


class StreamDecoder:
    """Turns one stream's bytes into text without splitting a character across messages.

    A multi-byte UTF-8 character cut at a chunk edge is held back until its last byte arrives;
    bytes that are not UTF-8 become U+FFFD rather than ending the session.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def decode(self, data: bytes) -> str:
        return self._decoder.decode(data)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


def utf8_prefix(data: bytes, limit: int) -> bytes:
    """The longest prefix of data of at most limit bytes that does not end inside a character."""
    if len(data) <= limit:
        return data
    cut = limit
    # Step back over continuation bytes (10xxxxxx) so the cut falls on a character's first byte.
    while cut > 0 and cut > limit - 4 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return data[:cut]
