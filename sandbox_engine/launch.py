"""The launcher protocol: how a program reaches its sandbox and how the sandbox reports its stages.

This module is its only owner. Both launchers (the POSIX `sh` script built here, and the Python
launcher in `launchers/`, which gets these constants prepended) and the stream parser in
`framing` use it; no executor knows its details, so any runtime that can start a process with
stdin and stdout (Docker today, Kubernetes next) reuses it as it is.

In, on the sandbox's stdin: a header line `<bytes> <cols> <rows>`, then exactly <bytes> of code;
after a compile stage, one line that lets the program start (the go); then the program's input.
Out, on its stdout: marks `\\x1eSANDBOX-<NAME> <nonce>[ <number>]`, each a line of its own:
READY (a tty is raw and may take the header), STARTED (a tty is sane again and may take the
program's input), COMPILED <exit code> (the compile stage is over). The nonce is the sandbox's
own, so that output which merely looks like a mark is passed on as output.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
from collections.abc import Mapping

from .executor import SandboxSpec, Terminal

# The environment that carries the protocol's per-sandbox facts to the launcher.
ENV_NONCE = "SANDBOX_NONCE"
ENV_SOURCE = "SANDBOX_SOURCE"
# docker-init (tini) and the like: pass signals to the program's whole process group.
ENV_KILL_GROUP = "TINI_KILL_PROCESS_GROUP"

MARK_START = b"\x1eSANDBOX-"
READY = "READY"
STARTED = "STARTED"
COMPILED = "COMPILED"
# A mark is a short line: a \x1e further back than this in the output begins none.
MARK_MAX = 64

_LAUNCHERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launchers")


def new_nonce() -> str:
    return secrets.token_hex(8)


def header(code: bytes, terminal: Terminal | None) -> bytes:
    """What the launcher reads first: the code's size and the terminal's, then the code."""
    size = terminal or Terminal()
    return f"{len(code)} {size.cols} {size.rows}\n".encode() + code


# After a compile stage, the line that lets the program start.
GO = b"\n"


def mark(name: str, nonce: str, number: int | None = None) -> bytes:
    """A mark as a launcher writes it."""
    tail = f" {number}" if number is not None else ""
    return MARK_START + f"{name} {nonce}{tail}\n".encode()


def mark_pattern(nonce: str) -> re.Pattern[bytes]:
    """STARTED and COMPILED <exit code> marks of this nonce, as they arrive (a tty turns \\n
    into \\r\\n). Group 1 is STARTED for that mark; group 2 the COMPILED mark's exit code."""
    n = re.escape(nonce.encode())
    started, compiled = STARTED.encode(), COMPILED.encode()
    return re.compile(re.escape(MARK_START) + rb"(?:(%s) %s|%s %s (-?\d+))\r?\n" % (started, n, compiled, n))


def environment(spec: SandboxSpec, nonce: str) -> dict[str, str]:
    """The sandbox's environment: the language's, and what its launcher needs."""
    env = dict(spec.env)
    env[ENV_SOURCE] = spec.source_file
    env[ENV_NONCE] = nonce
    # This is how a client's SIGINT reaches every process of the program, not only the first.
    env[ENV_KILL_GROUP] = "1"
    if spec.tty:
        env.setdefault("TERM", "xterm-256color")
    return env


def command(spec: SandboxSpec) -> list[str]:
    """The sandbox's command: the language's own launcher where it has one, else `sh`."""
    if spec.launcher == "python" and not spec.compile:
        # The interpreter starts now and waits for the program: a warm sandbox skips its start-up.
        return ["python3", "-u", "-c", python_launcher()]
    return sh_launcher(spec.command, spec.compile, spec.tty)


def sh_launcher(
    command: tuple[str, ...], compile: tuple[str, ...] | None = None, tty: bool = False
) -> list[str]:
    """A POSIX sh script that takes the program from stdin and execs it."""

    def printf(name: str, number: str = "") -> str:
        fmt = f"\\036SANDBOX-{name} %s" + (" %d" if number else "") + "\\n"
        return f'printf "{fmt}" "$nonce"' + (f' "{number}"' if number else "")

    lines = ["umask 077", f"nonce=${ENV_NONCE}"]
    if tty:
        # A terminal would echo the code and act on control characters in it: raw until it is
        # in, and say so, because the engine must not write before.
        lines += ["stty raw -echo", printf(READY)]
    lines += [
        "read -r size cols rows || exit 0",
        # GNU head reads no byte past the count, so the program's input stays in stdin.
        f'head -c "$size" > "${ENV_SOURCE}" || exit 126',
    ]
    if tty:
        # Docker 20.10 ignores the size given at create and refuses a resize before start, so the
        # terminal gets its size here, before the program's first instruction. Input typed before
        # the terminal is sane again would be taken raw, so the engine holds it until this mark.
        lines += ['stty sane cols "$cols" rows "$rows"', printf(STARTED)]
    lines.append(f"unset {ENV_SOURCE} {ENV_NONCE} {ENV_KILL_GROUP} size cols rows")
    if compile:
        lines += [
            # Compiler output is the client's stderr; the compiler gets no stdin of the user's.
            f"{shlex.join(compile)} </dev/null 1>&2; rc=$?",
            printf(COMPILED, "$rc"),
            '[ "$rc" -eq 0 ] || exit "$rc"',
            # Wait for the engine's go: it first lowers the limits from the compile stage's.
            "stty -echo; read -r _ || exit 0; stty echo" if tty else "read -r _ || exit 0",
        ]
    lines += ["unset nonce", 'exec "$@"']
    return ["/bin/sh", "-c", "\n".join(lines), "launch", *command]


def python_launcher() -> str:
    """The Python launcher's source, with this protocol's constants defined before its code."""
    with open(os.path.join(_LAUNCHERS, "python_launcher.py"), encoding="utf-8") as f:
        body = f.read()
    constants = {
        "ENV_NONCE": ENV_NONCE,
        "ENV_SOURCE": ENV_SOURCE,
        "ENV_KILL_GROUP": ENV_KILL_GROUP,
        "MARK_READY": MARK_START + READY.encode() + b" ",
        "MARK_STARTED": MARK_START + STARTED.encode() + b" ",
    }
    return _definitions(constants) + body


def _definitions(constants: Mapping[str, str | bytes]) -> str:
    return "".join(f"{name} = {value!r}\n" for name, value in constants.items())
