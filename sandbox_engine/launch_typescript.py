"""The TypeScript launcher's parts: a warm compiler started before the code arrives, and the
compile stage's client of it (the launcher protocol itself is launch's)."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Sequence

_LAUNCHERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launchers")

# The TypeScript launcher: the fork launcher (below), with a warm compiler started before the code
# arrives (launchers/tsc_server.js) and a compile stage that asks it to compile instead of
# starting tsc; then the program runs in the Node that was waiting for it, as JavaScript's does.
TYPESCRIPT = "typescript"
# Where they meet: the FIFOs req and res, the server's pid (and its log, for whoever debugs it).
TSC_DIR = "/tmp/se-tsc"
# Between tsc's output and its exit code in the server's answer.
TSC_SEPARATOR = "\x1f"
# The compile stage's client, `sh -c <this> tsc-client tsc <arguments>`: it asks the warm
# compiler and prints what tsc would print, with tsc's exit code; when the server is gone (or goes
# before it answers) it runs `tsc <arguments>` itself, so a compile never depends on it. A
# watchdog opens both FIFOs once the server is gone, so that neither end waits for ever.
TSC_CLIENT = "\n".join(
    [
        f"d={TSC_DIR}",
        'pid=$(cat "$d/pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null || exec "$@"',
        # Its output elsewhere: a sleep outliving it must not hold the compile stage's stream open.
        '( while kill -0 "$pid"; do sleep 0.05; done',
        '  exec 3<>"$d/req" 4<>"$d/res"; sleep 1 ) >/dev/null 2>&1 &',
        "watchdog=$!",
        # tsc's output is pretty (colours, context, a summary) on a terminal: the server's too.
        "word=plain; [ -t 1 ] && word=pretty",
        'printf \'%s\\n\' "$word" > "$d/req"',
        'answer=$(cat "$d/res"; printf .)',
        'kill "$watchdog" 2>/dev/null',
        "answer=${answer%.}",
        f"sep=$(printf '\\{ord(TSC_SEPARATOR):03o}')",
        'case $answer in *"$sep"[0-9]*) ;; *) exec "$@" ;; esac',
        'printf \'%s\' "${answer%"$sep"*}"',
        'exit "${answer##*"$sep"}"',
    ]
)


_TSC_CLIENT = ("/bin/sh", "-c", TSC_CLIENT, "tsc-client")


def compile_stage(launcher: str, compile: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The command a language's compile stage runs: its compiler's, or for TypeScript the client
    of the warm compiler its launcher started (which takes the compiler's own command)."""
    if launcher == TYPESCRIPT and compile:
        return (*_TSC_CLIENT, *compile)
    return compile


def tsc_arguments(compile: tuple[str, ...]) -> tuple[str, ...]:
    """tsc's arguments, from a compile stage that is the warm compiler's client or tsc itself."""
    if compile[: len(_TSC_CLIENT)] == _TSC_CLIENT:
        compile = compile[len(_TSC_CLIENT) :]
    return compile[1:]


def typescript_prelude(arguments: Sequence[str]) -> tuple[str, ...]:
    """The sh lines that start the warm compiler, before the header is read (in umask 077). A
    subshell starts it, so that PID 1 reaps it when it ends (a zombie would seem alive to the
    client's kill -0); it reads nothing of the sandbox's stdin and writes nothing to its stdout."""
    node = shlex.join(["node", "-e", tsc_server(), "--", *arguments])
    return (
        f"mkdir -m 700 {TSC_DIR} && mkfifo {TSC_DIR}/req {TSC_DIR}/res \\",
        f"  && ( {node} </dev/null >/dev/null 2>{TSC_DIR}/log & echo $! >{TSC_DIR}/pid )",
    )


def tsc_server() -> str:
    """The warm compiler's source, with its constants defined before its code."""
    with open(os.path.join(_LAUNCHERS, "tsc_server.js"), encoding="utf-8") as f:
        body = f.read()
    constants = {"DIR": TSC_DIR, "SEPARATOR": TSC_SEPARATOR}
    # Strict mode only as the first statement: before the constants.
    definitions = "".join(f"const {name} = {json.dumps(value)};\n" for name, value in constants.items())
    return "'use strict';\n" + definitions + body
