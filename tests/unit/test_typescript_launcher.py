"""The TypeScript launcher's warm compiler, as far as it runs without its image: where the sandbox
starts it, and its client's protocol against a stand-in server (a shell script), on the host."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sandbox_engine import launch, launch_typescript
from sandbox_engine.config import Config
from sandbox_engine.languages import LANGUAGES
from sandbox_engine.specs import sandbox_spec

TSC = LANGUAGES["typescript"].compile
assert TSC is not None


def test_typescripts_compile_stage_is_the_warm_compilers_client_and_others_are_their_compilers():
    stage = launch_typescript.compile_stage("typescript", TSC)
    assert stage == ("/bin/sh", "-c", launch_typescript.TSC_CLIENT, "tsc-client", *TSC)
    assert sandbox_spec(Config(), LANGUAGES["typescript"], "s", tty=False).compile == stage
    c = LANGUAGES["c"]
    assert sandbox_spec(Config(), c, "s", tty=False).compile == c.compile
    # tsc's own arguments, whichever form the compile stage has (a sandbox's label keeps it).
    assert launch_typescript.tsc_arguments(stage) == launch_typescript.tsc_arguments(TSC) == TSC[1:]


def test_the_warm_compiler_starts_before_the_header_is_read_with_tscs_arguments():
    spec = sandbox_spec(Config(), LANGUAGES["typescript"], "s", tty=True)
    argv = launch.command(spec)
    # The fork launcher, with the compiler's start as its prelude and a compile stage to wait for.
    assert argv[:2] == ["perl", "-e"]
    lines = launch_typescript.typescript_prelude(TSC[1:])
    assert argv[2] == launch.fork_launcher(spec.command, prelude=lines, linger=launch.LINGER)
    assert "our $COMPILES = 1;" in argv[2] and f"our $LINGER = {launch.LINGER!r};" in argv[2]
    prelude = "\n".join(lines)
    assert " -- --strict --target es2022" in prelude
    # Its stdin, stdout and stderr are not the sandbox's.
    assert "</dev/null >/dev/null 2>/tmp/se-tsc/log" in prelude
    # Other languages' launchers start nothing of the sort.
    c = sandbox_spec(Config(), LANGUAGES["c"], "s", tty=False)
    assert "node" not in launch.command(c)[2]


@pytest.mark.skipif(shutil.which("node") is None, reason="no node on this host")
def test_the_warm_compilers_source_is_valid_javascript(tmp_path):
    source = tmp_path / "tsc_server.js"
    source.write_text(launch_typescript.tsc_server())
    checked = subprocess.run(["node", "--check", str(source)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert launch_typescript.tsc_server().startswith("'use strict';\nconst DIR = \"/tmp/se-tsc\";\n")


# Stand-ins for the server, in sh.
SERVERS = {
    # Answers in two writes: the client reads until the server closes.
    "answers": 'word=$(cat "$d/req"); { printf \'said %s\\n\\037x\\037\' "$word"; printf 3; } > "$d/res"',
    # Takes the request, then dies without an answer.
    "dies": 'cat "$d/req" >/dev/null; exit 1',
}
# What the client runs when the server cannot answer: tsc itself, here a stand-in.
FALLBACK = ("sh", "-c", "echo plain tsc; exit 5")


def client(directory: Path, server: str | None) -> subprocess.CompletedProcess:
    """The compile stage's client against a stand-in server (None: one already gone)."""
    os.mkfifo(directory / "req")
    os.mkfifo(directory / "res")
    script = launch_typescript.TSC_CLIENT.replace(launch_typescript.TSC_DIR, str(directory))
    pid = directory / "pid"
    # Started as the launcher starts the real one, in a subshell: an orphan, reaped when it ends.
    env = {"d": str(directory), "PATH": os.environ["PATH"]}
    subprocess.run(["sh", "-c", f"( {server or 'true'} ) & echo $! > {pid}"], env=env, check=True)
    if server is None:
        # Gone before the client came.
        while subprocess.run(["kill", "-0", pid.read_text().strip()], capture_output=True).returncode == 0:
            pass
    try:
        return subprocess.run(
            ["sh", "-c", script, "tsc-client", *FALLBACK], capture_output=True, text=True, timeout=20
        )
    finally:
        subprocess.run(["kill", "-9", pid.read_text().strip()], capture_output=True)


def test_the_client_prints_the_servers_answer_and_exits_with_its_code(tmp_path):
    done = client(tmp_path, SERVERS["answers"])
    # Everything before the last separator is tsc's output, separators in it included.
    assert (done.stdout, done.returncode) == ("said plain\n\x1fx", 3)


@pytest.mark.parametrize("server", [None, "dies"], ids=["gone", "dies-before-answering"])
def test_the_client_runs_tsc_itself_when_the_server_cannot_answer(tmp_path, server):
    done = client(tmp_path, SERVERS[server] if server else None)
    assert (done.stdout, done.returncode) == ("plain tsc\n", 5)
