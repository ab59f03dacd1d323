"""`sandbox-engine run`: run a local file in a sandbox, wired to this terminal or these pipes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import termios
import threading
import tty
from collections.abc import Iterator

import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection, connect

REASONS = {
    "idle_timeout": "no input and no output for too long",
    "timeout": "the time limit was reached",
    "output_limit": "the output limit was reached",
    "memory_limit": "the memory limit was exceeded",
    "killed": "it was stopped",
    "client_disconnected": "the connection was lost",
    "server_shutdown": "the server shut down",
    "internal_error": "of an internal error in the server",
}


class ClientError(Exception):
    """Something to tell the user in one line, then exit 2."""


def run(server: str, path: str, language: str | None, use_tty: bool | None) -> int:
    try:
        with open(path, encoding="utf-8") as f:
            code = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientError(f"cannot read {path}: {exc}") from None
    language = language or language_of(server.rstrip("/"), path)
    interactive = sys.stdin.isatty() if use_tty is None else use_tty
    body: dict = {"language": language, "code": code}
    if interactive:
        cols, rows = _terminal_size()
        body.update(tty=True, cols=cols, rows=rows)
    session_id = _create(server.rstrip("/"), body)
    ws_url = "ws" + server.rstrip("/")[len("http") :] + f"/ws/session/{session_id}"
    try:
        with connect(ws_url, open_timeout=30, max_size=None) as ws:
            with _raw_terminal(interactive and sys.stdin.isatty()):
                return _talk(ws, interactive)
    except InvalidStatus as exc:
        raise ClientError(f"the server refused the session: {_error_message(exc.response.body)}") from None
    except (OSError, InvalidURI) as exc:
        raise ClientError(f"cannot reach {server}: {exc}") from None


def language_of(server: str, path: str) -> str:
    """The language of a file by its extension, as the server's GET /languages maps them."""
    extension = os.path.splitext(path)[1].lower()
    if not extension:
        raise ClientError(f"cannot tell the language of {path} without an extension; give --lang")
    try:
        response = requests.get(f"{server}/languages", timeout=30)
    except requests.RequestException as exc:
        raise ClientError(f"cannot reach {server}: {exc.__class__.__name__}") from None
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


def _terminal_size() -> tuple[int, int]:
    """This terminal's size; 80x24 where it has none (a pipe, or a pty nobody sized)."""
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except OSError:
        return 80, 24
    return size.columns or 80, size.lines or 24


def _create(server: str, body: dict) -> str:
    try:
        response = requests.post(f"{server}/session", json=body, timeout=30)
    except requests.RequestException as exc:
        raise ClientError(f"cannot reach {server}: {exc.__class__.__name__}") from None
    if response.status_code != 201:
        message = _error_message(response.content)
        if response.status_code == 429:
            message += f" (retry in {response.headers.get('Retry-After', 'a few')} s)"
        raise ClientError(f"the server refused: {message}")
    return response.json()["sessionId"]


def _error_message(body: bytes | None) -> str:
    try:
        return json.loads(body or b"")["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return (body or b"no reason given").decode("utf-8", "replace").strip()[:200]


@contextlib.contextmanager
def _raw_terminal(enabled: bool) -> Iterator[None]:
    """The local terminal in raw mode while the session runs, restored on every way out."""
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


def _talk(ws: ClientConnection, interactive: bool) -> int:
    def send(message: dict) -> None:
        with contextlib.suppress(ConnectionClosed):
            ws.send(json.dumps(message))

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
    out, err = sys.stdout.buffer, sys.stderr.buffer
    while True:
        try:
            message = json.loads(ws.recv())
        except KeyboardInterrupt:
            # Pipe mode: this terminal's Ctrl-C goes to the program as it would locally.
            send({"type": "signal", "signal": "SIGINT"})
            continue
        except ConnectionClosed:
            raise ClientError("the connection to the server was lost") from None
        kind = message.get("type")
        if kind in ("stdout", "stderr"):
            stream = out if kind == "stdout" else err
            stream.write(message["data"].encode())
            stream.flush()
        elif kind == "error":
            err.write(f"sandbox-engine: {message['message']}\r\n".encode())
            err.flush()
        elif kind == "state" and message["state"] in ("FINISHED", "TERMINATED"):
            return _exit_code(message)


def _exit_code(final: dict) -> int:
    exit_code = final.get("exitCode")
    if final["state"] == "FINISHED":
        if final["reason"] == "compile_error":
            sys.stderr.write("sandbox-engine: compilation failed\n")
        return exit_code if isinstance(exit_code, int) else 1
    reason = REASONS.get(final["reason"], final["reason"])
    sys.stderr.write(f"\r\nsandbox-engine: the session was ended because {reason}\r\n")
    return exit_code if isinstance(exit_code, int) and exit_code != 0 else 1
