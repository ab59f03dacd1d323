"""The launchers and se-run in the real images, started by `docker run -i` hardened as the Docker
executor starts a sandbox, without a server: what the engine's side of the protocol reads."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
from harness import GVISOR, RUNTIME

from sandbox_engine import launch, launch_typescript
from sandbox_engine.config import Config
from sandbox_engine.docker_executor import GVISOR_SECCOMP
from sandbox_engine.executor import COMPILE_GID, SandboxSpec
from sandbox_engine.languages import LANGUAGES
from sandbox_engine.specs import sandbox_spec

pytestmark = [pytest.mark.docker, pytest.mark.slow]

NONCE = launch.new_nonce()
# A uid of its own, as a sandbox's is, outside the range the servers lease theirs from.
UID = Config().uids.start - 1
EXIT = re.compile(
    rb"\x1eSANDBOX-EXIT " + NONCE.encode() + rb" (-?\d+) (\d+) (\d+) (\d+) (\d+) (-|timeout|abort)\r?\n"
)
END = launch.mark(launch.END, NONCE)


def exits(stdout: bytes) -> tuple[list[bytes], list[tuple]]:
    """Each run's output and its EXIT mark's figures: (code, signal, cpu us, rss KiB, wall us, flag)."""
    parts = EXIT.split(stdout)
    fields = [parts[i : i + 6] for i in range(1, len(parts), 7)]
    return parts[::7], [(*(int(f) for f in run[:5]), run[5].decode()) for run in fields]


def spec(language: str) -> SandboxSpec:
    return sandbox_spec(Config(), LANGUAGES[language], "s", tty=False)


@contextmanager
def sandbox(docker_client, language: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """The language's sandbox, its launcher waiting on stdin; removed after."""
    lang = spec(language)
    docker_client.images.get(lang.image)
    name = f"se-launchers-{uuid.uuid4().hex[:12]}"
    stack = ExitStack()
    tmpfs = "rw,exec,nosuid,nodev,size=64m"
    argv = ["docker", "run", "--rm", "-i", "--init", f"--runtime={RUNTIME}", f"--name={name}"]
    argv += [f"--user={UID}:{UID}", "--cap-drop=ALL", "--security-opt=no-new-privileges", "--read-only"]
    argv += ["--network=none", "--memory=512m", "--workdir=/workspace"]
    argv += [f"--tmpfs=/workspace:{tmpfs},uid={UID},gid={UID},mode=0700", f"--tmpfs=/tmp:{tmpfs},mode=1777"]
    if not GVISOR:
        argv.append("--pids-limit=64")
    else:
        # The executor's profile: under Docker's default, glibc starts no thread there (node none).
        # The CLI takes it from a file; it is read before the container is created.
        profile = stack.enter_context(tempfile.NamedTemporaryFile("w", suffix=".json"))
        json.dump(GVISOR_SECCOMP, profile)
        profile.flush()
        argv.append(f"--security-opt=seccomp={profile.name}")
    for key, value in launch.environment(lang).items():
        argv += ["-e", f"{key}={value}"]
    process = subprocess.Popen(
        [*argv, lang.image, *launch.command(lang)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        yield process, name
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        process.kill()
        process.communicate()
        stack.close()


def run(docker_client, language: str, stdin: bytes) -> tuple[bytes, bytes, int]:
    with sandbox(docker_client, language) as (process, _):
        stdout, stderr = process.communicate(stdin, timeout=60)
        return stdout, stderr, process.returncode


# Every process's environment and command line, and the launcher's (its parent's) memory, as the
# program can read them, through /proc or ptrace: the nonce is in none. (It holds the nonce
# reversed, so that its own source does not.)
SNOOP = """
import ctypes, os
def read(path):
    try:
        with open(path, "rb") as f:
            return f.read(1 << 20)
    except OSError:
        return b""
pids = [p for p in os.listdir("/proc") if p.isdigit()]
seen = b"".join(read(f"/proc/{p}/{name}") for p in pids for name in ("environ", "cmdline"))
traced = ctypes.CDLL(None, use_errno=True).ptrace(16, os.getppid(), 0, 0) == 0  # PTRACE_ATTACH
print(REVERSED[::-1] in seen, read(f"/proc/{os.getppid()}/mem"), traced, os.environ.get("SANDBOX_NONCE"))
""".replace("REVERSED", repr(NONCE[::-1].encode()))


def test_the_python_launcher_runs_a_program_once_and_reports_its_end(docker_client):
    code = b"name = input()\nprint('hello', name)\nraise SystemExit(4)"
    stdout, stderr, status = run(docker_client, "python", launch.header(code, None, NONCE) + b"you\n")
    [output, rest], [(exit_code, sig, cpu, rss, wall, flag)] = exits(stdout)
    assert (output, rest, status, exit_code, sig, flag) == (b"hello you\n", b"", 4, 4, 0, "-"), stderr
    assert 0 < cpu < 1_000_000 and rss > 1000
    if not GVISOR:
        # gVisor's clock of a program's CPU time runs on while the host holds the sandbox back
        # (see test_sandbox's CPU test): 40 ms of it in 18 ms of wall time under CI's load.
        assert wall >= cpu * 0.5


@pytest.mark.parametrize("tests", [False, True], ids=["once", "tests"])
def test_no_program_reads_the_nonce(docker_client, tests):
    stdin = launch.header(SNOOP.encode(), None, NONCE, tests=tests)
    if tests:
        stdin += launch.test_frame(b"", 10000)
    stdout, stderr, _ = run(docker_client, "python", stdin)
    [output, _], _ = exits(stdout)
    assert output == b"False b'' False None\n", stderr


# Each module python3 imported at its start whose byte-code cache is missing or older than its
# source: compiled anew at every start, since a sandbox's root file system is read-only.
STALE_CACHES = """
import importlib.util, os, sys
stale = []
for module in list(sys.modules.values()):
    source, cached = getattr(module, "__file__", None), getattr(module, "__cached__", None)
    if not source or not cached or not source.endswith(".py"):
        continue
    try:
        with open(cached, "rb") as f:
            head = f.read(16)
    except OSError:
        stale.append(module.__name__)
        continue
    st = os.stat(source)
    mtime, size = int.from_bytes(head[8:12], "little"), int.from_bytes(head[12:16], "little")
    checked = int.from_bytes(head[4:8], "little") == 0
    fresh = (mtime, size) == (int(st.st_mtime) & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF)
    if head[:4] != importlib.util.MAGIC_NUMBER or (checked and not fresh):
        stale.append(module.__name__)
print(sorted(stale))
"""


def test_every_module_python_imports_at_its_start_has_a_fresh_cache(docker_client):
    # The image appends to Debian's sitecustomize (whole_writes.py): its cache must follow, or every
    # python3 in a sandbox pays its compile (1.3 ms) at the start.
    image = spec("python").image
    out = docker_client.containers.run(image, ["python3", "-c", STALE_CACHES], read_only=True, remove=True)
    assert out == b"[]\n"


def test_the_python_launcher_runs_each_test_in_a_fresh_interpreter(docker_client):
    code = b"import sys\nif sys.argv[1:] == ['spin']:\n    while True: pass\nprint(sys.argv[1:], input())"
    frames = [
        launch.test_frame(b"one\n", 10000, ["a", "b"]),
        launch.test_frame(b"", 500, ["spin"]),
        launch.test_frame(b"two\n", 10000),
    ]
    stdout, stderr, status = run(
        docker_client, "python", launch.header(code, None, NONCE, tests=True) + b"".join(frames)
    )
    outputs, marks = exits(stdout)
    assert outputs == [b"['a', 'b'] one\n", b"", b"[] two\n", b""]
    assert [(m[0], m[1], m[5]) for m in marks] == [(0, 0, "-"), (-1, 9, "timeout"), (0, 0, "-")]
    assert marks[1][4] >= 500_000, "the spinning test's wall time: up to its timeout"
    assert (stderr, status) == (END * 3, 0)


C_PROGRAM = rb"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "memory") == 0) {
        size_t size = 50 << 20;
        char *block = malloc(size);
        memset(block, '1', size);
        /* Written out, so the compiler keeps the memset: 50 MiB touched. */
        fwrite(block + size - 2, 1, 2, stdout);
        return 0;
    }
    char line[100];
    if (fgets(line, sizeof line, stdin) == NULL) return 2;
    printf("%d %s", argc, line);
    fprintf(stderr, "to stderr\n");
    return atoi(line);
}
"""


def test_a_compiled_program_runs_per_test_after_its_compile_stage(docker_client):
    with sandbox(docker_client, "c") as (process, name):
        process.stdin.write(launch.header(C_PROGRAM, None, NONCE, tests=True))
        process.stdin.flush()
        started = launch.mark(launch.STARTED, NONCE)
        assert process.stdout.read(len(started)) == started
        # The compile stage, as the executor runs it: beside the launcher, in the compile group.
        compile_argv = launch.compile_command(LANGUAGES["c"].compile)
        user = f"--user={UID}:{COMPILE_GID}"
        nonce = f"--env={launch.ENV_NONCE}={launch.new_nonce()}"
        compiled = subprocess.run(
            ["docker", "exec", user, nonce, name, *compile_argv], capture_output=True, timeout=60
        )
        assert compiled.returncode == 0, compiled.stderr
        # Measured beside the launcher, which it left waiting: the program still runs below.
        assert b"SANDBOX-EXIT" in compiled.stderr
        frames = [launch.test_frame(b"0 first\n", 10000), launch.test_frame(b"3\n", 10000, ["x"])]
        frames.append(launch.test_frame(b"", 10000, ["memory"]))
        stdout, stderr = process.communicate(launch.GO + b"".join(frames), timeout=60)
    outputs, marks = exits(stdout)
    assert outputs == [b"1 0 first\n", b"2 3\n", b"11", b""]
    assert [(m[0], m[1], m[5]) for m in marks] == [(0, 0, "-"), (3, 0, "-"), (0, 0, "-")]
    assert marks[2][3] >= 50 << 10, "the memory test's maximum resident set, in KiB"
    assert stderr == b"to stderr\n" + END + b"to stderr\n" + END + END
    assert process.returncode == 0


# SNOOP in TypeScript: every process's environment and command line, as the program reads them.
TS_SNOOP = """
import * as fs from 'fs';
const read = (path: string): string => {
  try {
    return fs.readFileSync(path, 'latin1');
  } catch {
    return '';
  }
};
const pids = fs.readdirSync('/proc').filter((name) => /^[0-9]+$/.test(name));
const seen = pids.map((p) => read(`/proc/${p}/environ`) + read(`/proc/${p}/cmdline`)).join('');
console.log(seen.includes(REVERSED.split('').reverse().join('')), process.env.SANDBOX_NONCE);
""".replace("REVERSED", repr(NONCE[::-1]))


def test_the_typescript_sandbox_compiles_with_its_warm_compiler_and_hides_the_nonce(docker_client):
    with sandbox(docker_client, "typescript") as (process, name):
        process.stdin.write(launch.header(TS_SNOOP.encode(), None, NONCE))
        process.stdin.flush()
        started = launch.mark(launch.STARTED, NONCE)
        assert process.stdout.read(len(started)) == started
        as_compiler = ["docker", "exec", f"--user={UID}:{COMPILE_GID}", name]
        alive = f'kill -0 "$(cat {launch_typescript.TSC_DIR}/pid)"'
        # The warm compiler (started before the header, so without the nonce) waits beside the
        # launcher; the compile stage's client asks it, and it ends once it has answered.
        assert subprocess.run([*as_compiler, "sh", "-c", alive], timeout=30).returncode == 0
        nonce = f"--env={launch.ENV_NONCE}={launch.new_nonce()}"
        compile_argv = launch.compile_command(spec("typescript").compile)
        compiled = subprocess.run(
            [*as_compiler[:-1], nonce, name, *compile_argv], capture_output=True, timeout=90
        )
        assert compiled.returncode == 0, compiled.stderr
        assert subprocess.run([*as_compiler, "sh", "-c", alive], timeout=30).returncode != 0
        stdout, stderr = process.communicate(launch.GO, timeout=60)
    [output, rest], [(exit_code, _, cpu, _, _, flag)] = exits(stdout)
    assert (output, rest, exit_code, flag) == (b"false undefined\n", b"", 0, "-"), stderr
    assert cpu > 0


# SNOOP in JavaScript: every process's environment and command line, and whose the launcher's (its
# parent's) /proc files are (root's: it is not dumpable, so its memory cannot be read).
JS_SNOOP = """
const fs = require('fs');
const read = (path) => {
  try {
    return fs.readFileSync(path, 'latin1');
  } catch {
    return '';
  }
};
const pids = fs.readdirSync('/proc').filter((name) => /^[0-9]+$/.test(name));
const seen = pids.map((p) => read(`/proc/${p}/environ`) + read(`/proc/${p}/cmdline`)).join('');
const owner = fs.statSync(`/proc/${process.ppid}/mem`).uid;
console.log(seen.includes(REVERSED.split('').reverse().join('')), process.env.SANDBOX_NONCE, owner);
""".replace("REVERSED", repr(NONCE[::-1]))


@pytest.mark.parametrize("tests", [False, True], ids=["once", "tests"])
def test_no_javascript_program_reads_the_nonce(docker_client, tests):
    stdin = launch.header(JS_SNOOP.encode(), None, NONCE, tests=tests)
    if tests:
        stdin += launch.test_frame(b"", 10000)
    stdout, stderr, _ = run(docker_client, "javascript", stdin)
    [output, _], _ = exits(stdout)
    # In TESTS mode se-run is the parent (not dumpable either); else the fork launcher.
    assert output == b"false undefined 0\n", stderr


def test_the_node_launcher_runs_a_warm_node_as_node_main_js_and_reports_its_end(docker_client):
    code = (
        b"const rl = require('readline').createInterface({ input: process.stdin });\n"
        b"process.stdout.write('name? ');\n"
        b"rl.once('line', (name) => {\n"
        b"  console.log(name, process.argv.slice(1), require.main === module, process.execArgv);\n"
        b"  rl.close();\n"
        b"  process.exitCode = 4;\n"
        b"});\n"
    )
    stdout, stderr, status = run(docker_client, "javascript", launch.header(code, None, NONCE) + b"you\n")
    [output, rest], [(exit_code, sig, cpu, rss, wall, flag)] = exits(stdout)
    assert output == b"name? you [ '/workspace/main.js' ] true []\n", stderr
    assert (rest, status, exit_code, sig, flag) == (b"", 4, 4, 0, "-")
    assert 0 < cpu < 5_000_000 and rss > 10_000 and wall > 0


def test_the_node_launcher_runs_each_test_in_a_fresh_node(docker_client):
    code = b"console.log(process.argv.slice(2), require('fs').readFileSync(0, 'utf8').trim())"
    frames = [launch.test_frame(b"one\n", 10000, ["a"]), launch.test_frame(b"two\n", 10000)]
    stdout, stderr, status = run(
        docker_client, "javascript", launch.header(code, None, NONCE, tests=True) + b"".join(frames)
    )
    outputs, marks = exits(stdout)
    assert outputs == [b"[ 'a' ] one\n", b"[] two\n", b""]
    assert [(m[0], m[1], m[5]) for m in marks] == [(0, 0, "-"), (0, 0, "-")]
    assert (stderr, status) == (END * 2, 0)
