"""`sandbox-engine run`: run a local file in a sandbox, wired to this terminal or these pipes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sys
import termios
import threading
import tty
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import BinaryIO

import requests
from websockets.exceptions import InvalidStatus, InvalidURI

from .follow import Follower, Lost

# Where `sandbox-engine run` looks for the server when neither --server nor the variable says.
DEFAULT_SERVER = "http://127.0.0.1:8080"
SERVER_VARIABLE = "SANDBOX_ENGINE_SERVER"
# The API key, when --key does not give one.
KEY_VARIABLE = "SANDBOX_ENGINE_KEY"

# How the engine ended a session, in words that follow "ended because"; the IDE has its own
# table (static/src/status.js) with the same words.
REASONS = {
    "idle_timeout": "no input and no output for too long",
    "input_timeout": "no input for too long while waiting at a prompt",
    "timeout": "the time limit was reached",
    "output_limit": "the output limit was reached",
    "memory_limit": "the memory limit was exceeded",
    "killed": "it was stopped",
    "client_disconnected": "the connection was lost",
    "server_shutdown": "the server shut down",
    "internal_error": "of an internal error in the server",
}

# What the signal that ended a program means, for those who do not know their numbers.
SIGNALS = {
    "SIGSEGV": "segmentation fault",
    "SIGABRT": "aborted",
    "SIGFPE": "arithmetic error",
    "SIGKILL": "killed",
    "SIGILL": "illegal instruction",
    "SIGBUS": "bus error",
    "SIGTERM": "terminated",
    "SIGINT": "interrupted",
    "SIGPIPE": "broken pipe",
    "SIGXCPU": "CPU time limit",
}


# Terminal escape sequences: CSI (colours, modes), OSC (to BEL or ST), two-byte ones; and bells.
ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()*+#][ -~]|[ -~])|\x07")


class ClientError(Exception):
    """Something to tell the user in one line, then exit 2."""


def server_url(given: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The server's base URL: --server, else $SANDBOX_ENGINE_SERVER, else the default; a URL
    without a scheme (`127.0.0.1:8080`) is taken as http://."""
    environ = os.environ if environ is None else environ
    text = (given or environ.get(SERVER_VARIABLE) or DEFAULT_SERVER).strip()
    if "://" not in text:
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ClientError(f"{text} is not a server URL: the port is not a number") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientError(f"{text} is not a server URL: give http://HOST:PORT or https://HOST")
    return text.rstrip("/")


def auth_headers(key: str | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`Authorization: Bearer` with --key, else $SANDBOX_ENGINE_KEY; none without either."""
    environ = os.environ if environ is None else environ
    key = (key or environ.get(KEY_VARIABLE) or "").strip()
    return {"Authorization": f"Bearer {key}"} if key else {}


def run(
    server: str | None,
    path: str,
    language: str | None,
    use_tty: bool | None,
    merge_stderr: bool = False,
    key: str | None = None,
) -> int:
    try:
        with open(path, encoding="utf-8") as f:
            code = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientError(f"cannot read {path}: {exc}") from None
    server = server_url(server)
    headers = auth_headers(key)
    language = language or language_of(server, path, headers)
    interactive = sys.stdin.isatty() if use_tty is None else use_tty
    body: dict = {"language": language, "code": code}
    if interactive:
        cols, rows = _terminal_size()
        body.update(tty=True, cols=cols, rows=rows)
    if merge_stderr:
        body["mergeStderr"] = True
    session_id = _create(server, body, headers)
    # The session's id is its WebSocket's capability: no key goes with it.
    ws_url = "ws" + server[len("http") :] + f"/ws/session/{session_id}"
    raw = interactive and sys.stdin.isatty()
    console = Console(raw)
    stream = _follow(server, ws_url, console, watching=False)
    try:
        with _raw_terminal(raw):
            return _talk(stream, interactive, console)
    finally:
        stream.close()


def watch(link: str) -> int:
    """`sandbox-engine watch URL`: follow a shared session (its share link, or the watch
    WebSocket's URL), print its output live, and exit as its program did."""
    parts = urllib.parse.urlsplit(link.strip())
    match = re.fullmatch(r"(.*?)/(?:ws/session/([^/]+)/watch|watch/([^/]+))/?", parts.path)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc or match is None:
        raise ClientError(f"{link} is not a watch link: give the share link, .../watch/<id>?token=...")
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    session_id = match.group(2) or match.group(3)
    path = f"{match.group(1)}/ws/session/{session_id}/watch"
    ws_url = urllib.parse.urlunsplit((scheme, parts.netloc, path, parts.query, ""))
    server = urllib.parse.urlunsplit(({"ws": "http", "wss": "https"}.get(scheme), parts.netloc, "", "", ""))
    console = Console(False)
    stream = _follow(server, ws_url, console, watching=True)
    try:
        while True:
            message = _next(stream)
            kind = message.get("type")
            if kind in ("stdout", "stderr"):
                console.write(kind, message["data"])
            elif kind == "state" and message["state"] in ("FINISHED", "TERMINATED"):
                words = ending(message)
                if words:
                    console.say(words)
                return exit_code(message)
    finally:
        stream.close()


def _follow(server: str, ws_url: str, console: Console, watching: bool) -> Follower:
    try:
        return Follower(ws_url, watching=watching, on_notice=console.say)
    except InvalidStatus as exc:
        raise ClientError(f"the server refused the session: {_error_message(exc.response.body)}") from None
    except (OSError, InvalidURI) as exc:
        raise ClientError(_unreachable(server, exc)) from None


def _next(stream: Follower) -> dict:
    try:
        return stream.next()
    except Lost as exc:
        raise ClientError(str(exc)) from None


def language_of(server: str, path: str, headers: Mapping[str, str] | None = None) -> str:
    """The language of a file by its extension, as the server's GET /languages maps them."""
    extension = os.path.splitext(path)[1].lower()
    if not extension:
        raise ClientError(f"cannot tell the language of {path} without an extension; give --lang")
    try:
        response = requests.get(f"{server}/languages", headers=headers, timeout=30)
    except requests.RequestException as exc:
        raise ClientError(_unreachable(server, exc)) from None
    if response.status_code in (401, 403):
        raise ClientError(_refused_key(response))
    if response.status_code != 200:
        message = _error_message(response.content)
        raise ClientError(f"the server did not list its languages: {message}; give --lang")
    try:
        languages = {
            language["id"]: [e.lower() for e in language["extensions"]]
            for language in response.json()["languages"]
        }
    except (ValueError, KeyError, TypeError, AttributeError):
        # A server from before GET /languages listed extensions, or not a sandbox-engine at all.
        raise ClientError(
            f"{server} does not say which languages take {extension} files; give --lang"
        ) from None
    for language, extensions in languages.items():
        if extension in extensions:
            return language
    known = ", ".join(sorted({e for extensions in languages.values() for e in extensions}))
    raise ClientError(f"no language of {server} takes {extension} files (it knows {known}); give --lang")


def _unreachable(server: str, exc: Exception) -> str:
    """One line for a server that did not answer, saying what to check rather than the exception."""
    if isinstance(exc, (requests.Timeout, TimeoutError)):
        return f"the server at {server} did not answer within 30 s"
    if isinstance(exc, (requests.ConnectionError, ConnectionError, socket.gaierror)):
        return f"cannot reach the server at {server}: is it running? (make run)"
    return f"cannot reach the server at {server}: {exc}"


def _terminal_size() -> tuple[int, int]:
    """This terminal's size; 80x24 where it has none (a pipe, or a pty nobody sized)."""
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except OSError:
        return 80, 24
    return size.columns or 80, size.lines or 24


def _create(server: str, body: dict, headers: Mapping[str, str] | None = None) -> str:
    try:
        response = requests.post(f"{server}/session", json=body, headers=headers, timeout=30)
    except requests.RequestException as exc:
        raise ClientError(_unreachable(server, exc)) from None
    if response.status_code in (401, 403):
        raise ClientError(_refused_key(response))
    if response.status_code != 201:
        message = _error_message(response.content)
        if response.status_code == 429:
            message += f" (retry in {response.headers.get('Retry-After', 'a few')} s)"
        raise ClientError(f"the server refused: {message}")
    return response.json()["sessionId"]


def _refused_key(response: requests.Response) -> str:
    """A refusal of the key, in words, with what to do about it."""
    message = _error_message(response.content)
    if response.status_code == 401:
        return f"the server refused: {message} (give --key, or set {KEY_VARIABLE})"
    return f"the server refused: {message}"


def _error_message(body: bytes | None) -> str:
    try:
        return json.loads(body or b"")["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return (body or b"no reason given").decode("utf-8", "replace").strip()[:200]


@contextlib.contextmanager
def _raw_terminal(enabled: bool) -> Iterator[None]:
    """The local terminal in raw mode while the session runs, restored on every way out.

    Raw mode also turns off this terminal's signal keys: Ctrl-C, Ctrl-Z and Ctrl-\\ arrive as
    bytes and go to the session's terminal, which decides what they do there.
    """
    if not enabled:
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}

    def restore_and_exit(signum, frame):
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        sys.exit(128 + signum)

    for sig in previous:
        signal.signal(sig, restore_and_exit)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Console:
    """This side's stdout and stderr: the program's output as it comes, and our own lines, each
    on a line of its own. Only a terminal in raw mode needs \\r\\n to end a line."""

    def __init__(self, raw: bool, out: BinaryIO | None = None, err: BinaryIO | None = None) -> None:
        self.newline = "\r\n" if raw else "\n"
        self.out = out or sys.stdout.buffer
        self.err = err or sys.stderr.buffer
        self.at_line_start = True

    def write(self, stream: str, data: str) -> None:
        if not data:
            return
        target = self.out if stream == "stdout" else self.err
        target.write(data.encode())
        target.flush()
        # What was printed decides, not the escape sequences after it that print nothing (Mono's
        # console ends with some: keypad mode off, the palette reset).
        visible = ESCAPES.sub("", data)
        if visible:
            self.at_line_start = visible.endswith("\n")

    def say(self, text: str) -> None:
        """A line of ours on stderr, after the program's last line even if it left one open."""
        start = "" if self.at_line_start else self.newline
        self.err.write(f"{start}sandbox-engine: {text}{self.newline}".encode())
        self.err.flush()
        self.at_line_start = True


def _talk(stream: Follower, interactive: bool, console: Console) -> int:
    send = stream.send

    if interactive and sys.stdout.isatty():

        def on_resize(signum, frame):
            cols, rows = _terminal_size()
            send({"type": "resize", "cols": cols, "rows": rows})

        signal.signal(signal.SIGWINCH, on_resize)

    def forward_stdin() -> None:
        fd = sys.stdin.fileno()
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            if not data:
                send({"type": "eof"})
                return
            # Raw mode: Ctrl-C is the byte \x03, which the session's terminal turns into SIGINT.
            send({"type": "input", "data": data.decode("utf-8", "replace")})

    threading.Thread(target=forward_stdin, name="stdin", daemon=True).start()
    while True:
        try:
            message = _next(stream)
        except KeyboardInterrupt:
            # Pipe mode: this terminal's Ctrl-C goes to the program as it would locally.
            send({"type": "signal", "signal": "SIGINT"})
            continue
        kind = message.get("type")
        if kind in ("stdout", "stderr"):
            console.write(kind, message["data"])
        elif kind == "error":
            console.say(message["message"])
        elif kind == "state" and message["state"] in ("FINISHED", "TERMINATED"):
            words = ending(message)
            if words:
                console.say(words)
            return exit_code(message)


def ending(final: dict) -> str | None:
    """How a session ended, in words; None for a program that exited by itself without a signal,
    whose exit code says it all."""
    reason = final.get("reason")
    name = final.get("signal")
    if reason == "compile_error":
        return "compilation failed"
    if reason == "exited":
        if not name:
            return None
        meaning = SIGNALS.get(name)
        return f"killed by {name} ({meaning})" if meaning else f"killed by {name}"
    if final.get("state") == "FINISHED":
        return None
    return f"the session was ended because {REASONS.get(reason, str(reason).replace('_', ' '))}"


def exit_code(final: dict) -> int:
    """The program's exit code (128+N for signal N), or 1 where the engine ended the session."""
    code = final.get("exitCode")
    if final["state"] == "FINISHED":
        return code if isinstance(code, int) else 1
    return code if isinstance(code, int) and code != 0 else 1
