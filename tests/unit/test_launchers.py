"""The launchers and se-run, run for real on the host in a sandbox-shaped box (see hostbox): the
protocol end to end without a container, as the engine's side of it reads it."""

from __future__ import annotations

import itertools
import os
import re
import select
import signal
import subprocess
import time
from dataclasses import dataclass

import pytest
from hostbox import UID, HostBox

from sandbox_engine import framing, launch
from sandbox_engine.executor import Started, Stream, Terminal

NONCE = "0123456789abcdef"
OUT = Stream.STDOUT
EXIT = re.compile(
    rb"\x1eSANDBOX-EXIT " + NONCE.encode() + rb" (-?\d+) (\d+) (\d+) (\d+) (\d+) (-|timeout|abort)\n"
)
END = launch.mark(launch.END, NONCE)
# The compile stage's own, as the executor gives it (see launch.compile_waiter).
COMPILE_NONCE = "fedcba9876543210"


@dataclass(frozen=True)
class Exit:
    code: int
    signal: int
    cpu_us: int
    maxrss_kib: int
    wall_us: int
    flag: str


def exits(stdout: bytes) -> tuple[list[bytes], list[Exit]]:
    """The output of each run (what precedes its EXIT mark, then what follows the last), and the
    runs' EXIT marks."""
    parts = EXIT.split(stdout)
    outputs, fields = parts[::7], [parts[i : i + 6] for i in range(1, len(parts), 7)]
    marks = [Exit(*(int(f) for f in run[:5]), run[5].decode()) for run in fields]
    return outputs, marks


def one_run(stdout: bytes) -> tuple[bytes, Exit]:
    (output, rest), [mark] = exits(stdout)
    assert rest == b"", "nothing comes after the EXIT mark"
    return output, mark


def sh(box: HostBox, program: str, compiles: bool = False, tty: bool = False) -> list[str]:
    """The sh launcher of a program given as a shell script (in `sh -c`)."""
    return launch.sh_launcher(("sh", "-c", program, "prog"), compiles, tty, se_run=box.se_run)


# The program most tests run: its own source (the file the launcher wrote), then its input.
ECHO = 'echo "ran $(cat main)"; cat'


def test_the_sh_launcher_takes_the_code_then_leaves_the_input_to_the_program(hostbox):
    done = hostbox.run(sh(hostbox, ECHO), launch.header(b"CODE", None, NONCE) + b"input\n")
    output, mark = one_run(done.stdout)
    assert output == b"ran CODE\ninput\n"
    assert (mark.code, mark.signal, mark.flag, done.returncode) == (0, 0, "-", 0)
    assert (hostbox.workdir / "main").read_bytes() == b"CODE"
    assert (hostbox.workdir / "main").stat().st_mode & 0o777 == 0o600


def test_the_sh_launcher_writes_the_further_files_privately(hostbox):
    files = [("lib/deep/a.txt", b"A\n"), ("b.txt", b""), ("c", b"x" * 100000)]
    program = "cat lib/deep/a.txt; wc -c < b.txt; wc -c < c; cat"
    stdin = launch.header(b"CODE", None, NONCE, files=files) + b"input\n"
    output, mark = one_run(hostbox.run(sh(hostbox, program), stdin).stdout)
    assert (output, mark.code) == (b"A\n0\n100000\ninput\n", 0)
    assert (hostbox.workdir / "lib").stat().st_mode & 0o777 == 0o700
    assert (hostbox.workdir / "lib/deep/a.txt").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "stdin",
    [
        launch.header(b"CODE", None, NONCE)[:-2],
        launch.header(b"CODE", None, NONCE, files=[("a", b"AAA")])[:-1],
        launch.header(b"CODE", None, NONCE, files=[("../a", b"A")]),
        launch.header(b"CODE", None, NONCE, files=[("/tmp/a", b"A")]),
    ],
    ids=["code", "file", "dotdot", "absolute"],
)
def test_a_short_code_or_file_or_a_name_outside_ends_the_sh_launcher_with_126(hostbox, stdin):
    done = hostbox.run(sh(hostbox, ECHO), stdin)
    assert (done.returncode, done.stdout) == (126, b"")


def test_without_a_header_the_sh_launcher_ends_with_0(hostbox):
    done = hostbox.run(sh(hostbox, ECHO), b"")
    assert (done.returncode, done.stdout) == (0, b"")


def test_with_a_compile_stage_the_sh_launcher_marks_the_source_in_place_and_waits_for_the_go(hostbox):
    launcher = hostbox.popen(sh(hostbox, ECHO, compiles=True))
    try:
        launcher.stdin.write(launch.header(b"CODE", None, NONCE))
        launcher.stdin.flush()
        started = launch.mark(launch.STARTED, NONCE)
        assert launcher.stdout.read(len(started)) == started
        # The compile stage's turn: the source is there, and nothing runs until the go.
        assert (hostbox.workdir / "main").read_bytes() == b"CODE"
        with pytest.raises(TimeoutError):
            wait(launcher, 0.3)
        launcher.stdin.write(launch.GO + b"input\n")
        launcher.stdin.close()
        output, mark = one_run(launcher.stdout.read())
        assert (output, mark.code) == (b"ran CODE\ninput\n", 0)
        assert launcher.wait(10) == 0
    finally:
        stop(launcher)


@pytest.mark.parametrize("launcher_kind", ["sh", "fork"])
@pytest.mark.parametrize("code", [0, 3])
def test_a_compile_stage_started_ahead_is_relayed_whole_until_the_engines_line(hostbox, code, launcher_kind):
    # Its FIFO where the box can make it (/tmp/se-compile in a sandbox).
    here = str(hostbox.workdir / "se-compile")
    # It leaves a process behind that holds its output open: the relay outlives it until the go.
    script = f'head -c 100000 /dev/zero | tr "\\0" x; echo; echo warned >&2; sleep 5 & exit {code}'
    compiler = ("sh", "-c", script)
    waiting = launch.compile_waiter(compiler, hostbox.se_run)
    waiting = [a.replace(launch.COMPILE_DIR, here) for a in waiting]
    waiter = hostbox.popen(waiting, SANDBOX_NONCE=COMPILE_NONCE)
    # The sh launcher (C's and the like), or the fork launcher (TypeScript's).
    argv, source = (
        (sh(hostbox, ECHO, compiles=True), "main")
        if launcher_kind == "sh"
        else (compiled_fork(hostbox), "main.js")
    )
    launcher = hostbox.popen([a.replace(launch.COMPILE_DIR, here) for a in argv], SANDBOX_SOURCE=source)
    try:
        # The relay's line comes with the header, before the source is in place.
        launcher.stdin.write(launch.header(b"CODE", None, NONCE) + launch.RELAY)
        launcher.stdin.flush()
        started = launch.mark(launch.STARTED, NONCE)
        assert launcher.stdout.read(len(started)) == started
        chunks = iter(lambda: os.read(launcher.stderr.fileno(), 65536), b"")
        items = ((Stream.STDERR, chunk) for chunk in chunks)
        *relayed, result = framing.compile_stage(items, COMPILE_NONCE)
        assert b"".join(data for _, data in relayed) == b"x" * 100000 + b"\nwarned\n"
        assert result.exit_code == code and result.usage is not None
        # The engine's line after the compile stage's end: the go, or its code.
        launcher.stdin.write((launch.GO if code == 0 else launch.halt(code)) + b"input\n")
        launcher.stdin.close()
        if code == 0:
            output, mark = one_run(launcher.stdout.read())
            ran = b"ran CODE\ninput\n" if launcher_kind == "sh" else b"gone\nCODE"
            assert (output, mark.code) == (ran, 0)
        assert launcher.wait(10) == code and waiter.wait(10) == code
        # The relay ended quietly: nothing more on the launcher's stderr (a shell's "Terminated")
        # but the fork launcher's END mark after its program.
        assert launcher.stderr.read() == (END if launcher_kind == "fork" and code == 0 else b"")
    finally:
        stop(launcher)
        stop(waiter)


@pytest.mark.parametrize("launcher_kind", ["sh", "fork"])
def test_on_a_terminal_a_compile_stage_started_ahead_writes_into_it(hostbox, launcher_kind):
    here = str(hostbox.workdir / "se-compile")
    # Says whether it writes into a terminal and how big it is: the sandbox's, sized by the header.
    compiler = ("sh", "-c", '[ -t 1 ] && echo "terminal $(stty size <&2)"; echo warned >&2')
    waiting = launch.compile_waiter(compiler, hostbox.se_run, tty=True)
    waiting = [a.replace(launch.COMPILE_DIR, here) for a in waiting]
    waiter = hostbox.popen(waiting, SANDBOX_NONCE=COMPILE_NONCE)
    argv, source = (
        (sh(hostbox, 'echo "ran $(cat main)"; read -r x; echo "got $x"', compiles=True, tty=True), "main")
        if launcher_kind == "sh"
        else (compiled_fork(hostbox), "main.js")
    )
    # The sandbox's terminal, its uid's as Docker makes it.
    master, slave = os.openpty()
    os.fchown(slave, UID, -1)
    launcher = subprocess.Popen(
        hostbox.command([a.replace(launch.COMPILE_DIR, here) for a in argv]),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=hostbox.workdir,
        env=hostbox.env(SANDBOX_SOURCE=source),
        start_new_session=True,
    )
    os.close(slave)
    try:
        read_until(master, launch.mark(launch.READY)[:-1])
        os.write(master, launch.header(b"CODE", Terminal(cols=77, rows=11), NONCE) + launch.RELAY)
        after = read_until(master, launch.mark(launch.STARTED, NONCE)[:-1] + b"\r\n").partition(b"\r\n")[2]
        chunks = itertools.chain([after], iter(lambda: os.read(master, 65536), b""))
        *written, result = framing.compile_stage(((OUT, chunk) for chunk in chunks), COMPILE_NONCE, OUT)
        assert b"".join(data for _, data in written) == b"terminal 11 77\r\nwarned\r\n"
        assert result.exit_code == 0
        # Typed with the go, before the launcher turns echo back on: not echoed, the program's.
        os.write(master, launch.GO + b"in\r")
        rest = b""
        while EXIT.search(rest.replace(b"\r\n", b"\n")) is None:
            rest += os.read(master, 65536)
        ran = b"ran CODE\ngot in\n" if launcher_kind == "sh" else b"gone\nCODE"
        assert EXIT.split(rest.replace(b"\r\n", b"\n"))[0] == ran
        assert launcher.wait(10) == 0 and waiter.wait(10) == 0
    finally:
        stop(waiter)
        launcher.kill()
        launcher.wait()
        os.close(master)


def read_until(fd: int, mark: bytes, timeout: float = 20) -> bytes:
    """What a terminal's master reads up to and with `mark`, and what came with it."""
    seen, deadline = b"", time.monotonic() + timeout
    while mark not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no {mark!r} in {timeout} s: {seen!r}"
        data = os.read(fd, 4096)
        assert data, f"ended before {mark!r}: {seen!r}"
        seen += data
    return seen


def stop(process) -> None:
    process.kill()
    process.wait()
    for stream in (process.stdin, process.stdout, process.stderr):
        stream.close()


def wait(process, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.01)
    return process.returncode


def test_after_a_failed_compile_the_sh_launcher_ends_with_its_code_and_runs_nothing(hostbox):
    stdin = launch.header(b"CODE", None, NONCE) + launch.halt(3) + b"input\n"
    done = hostbox.run(sh(hostbox, ECHO, compiles=True), stdin)
    assert list(framing.take_marks([(OUT, done.stdout)], NONCE, 1)) == [Started()]
    assert done.returncode == 3


def test_without_a_go_the_sh_launcher_runs_nothing(hostbox):
    done = hostbox.run(sh(hostbox, ECHO, compiles=True), launch.header(b"CODE", None, NONCE))
    assert list(framing.take_marks([(OUT, done.stdout)], NONCE, 1)) == [Started()]
    assert done.returncode == 0


def test_the_sh_launcher_merges_stderr_into_stdout_when_asked(hostbox):
    argv = sh(hostbox, "echo one; echo two >&2; echo three")
    for merge, stdout, stderr in ((True, b"one\ntwo\nthree\n", b""), (False, b"one\nthree\n", b"two\n")):
        done = hostbox.run(argv, launch.header(b"", None, NONCE, merge))
        output, _ = one_run(done.stdout)
        assert (output, done.stderr) == (stdout, stderr)


# --- se-run once: the EXIT mark and the exit status --------------------------------------------


@pytest.mark.parametrize(
    ("program", "code", "sig", "status"),
    [("exit 3", 3, 0, 3), ("kill -TERM $$", -1, 15, 143), ("kill -KILL $$", -1, 9, 137)],
)
def test_the_exit_mark_and_the_exit_status_say_how_the_program_ended(hostbox, program, code, sig, status):
    done = hostbox.run(sh(hostbox, program), launch.header(b"", None, NONCE))
    _, mark = one_run(done.stdout)
    assert (mark.code, mark.signal, done.returncode) == (code, sig, status)


def test_a_command_that_cannot_run_is_reported_as_a_shell_would(hostbox):
    argv = launch.sh_launcher(("no-such-command",), se_run=hostbox.se_run)
    done = hostbox.run(argv, launch.header(b"", None, NONCE))
    _, mark = one_run(done.stdout)
    assert (mark.code, done.returncode) == (127, 127)
    assert done.stderr == b"se-run: no-such-command: No such file or directory\n"


SPIN = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass"


@pytest.mark.parametrize(
    ("argv", "check"),
    [
        (("python3", "-c", SPIN), lambda m: m.cpu_us >= 250_000 and m.wall_us >= m.cpu_us * 0.9),
        (("sleep", "0.3"), lambda m: m.cpu_us < 50_000 and m.wall_us >= 300_000),
        (("python3", "-c", "b = b'x' * (50 << 20)"), lambda m: m.maxrss_kib >= 50 << 10),
        (("true",), lambda m: m.maxrss_kib < 10 << 10 and m.cpu_us < 50_000),
    ],
    ids=["cpu", "sleep", "memory", "true"],
)
def test_the_exit_mark_says_what_the_program_used(hostbox, argv, check):
    done = hostbox.run(launch.sh_launcher(argv, se_run=hostbox.se_run), launch.header(b"", None, NONCE))
    _, mark = one_run(done.stdout)
    assert mark.code == 0 and check(mark), mark


def tini_pid(launcher) -> int:
    """The host's pid of the box's PID 1 (docker-init), which the runtime signals."""
    path = f"/proc/{launcher.pid}/task/{launcher.pid}/children"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(path) as f:
            children = f.read().split()
        if children:
            return int(children[0])
        time.sleep(0.01)
    raise TimeoutError("the box did not start")


def test_the_clients_signals_reach_the_program_and_not_se_run(hostbox):
    program = 'trap "echo caught; exit 5" INT; echo ready; while :; do sleep 0.05; done'
    launcher = hostbox.popen(sh(hostbox, program))
    try:
        launcher.stdin.write(launch.header(b"", None, NONCE))
        launcher.stdin.flush()
        assert launcher.stdout.readline() == b"ready\n"
        os.kill(tini_pid(launcher), signal.SIGINT)
        output, mark = one_run(launcher.stdout.read())
        assert (output, mark.code, launcher.wait(10)) == (b"caught\n", 5, 5)
    finally:
        stop(launcher)


# What a program of the sandbox's uid can read of its parent (the launcher or se-run, holding the
# nonce) and of every process: the nonce must be in none of it. (The program holds it reversed, so
# that its own command line does not.)
SNOOP = r"""
import os
def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        return e.strerror.encode()
parent = os.getppid()
print("environ", read(f"/proc/{parent}/environ")[:40])
print("mem", read(f"/proc/{parent}/mem")[:40])
pids = [p for p in os.listdir("/proc") if p.isdigit()]
seen = b"".join(read(f"/proc/{p}/{name}") for p in pids for name in ("environ", "cmdline"))
print("nonce", REVERSED[::-1] in seen, "SANDBOX_NONCE" in os.environ)
""".replace("REVERSED", repr(NONCE[::-1].encode()))


@pytest.mark.parametrize("mode", [launch.ONCE, launch.TESTS])
def test_the_program_cannot_read_the_nonce(hostbox, mode):
    argv = launch.sh_launcher(("python3", "-c", SNOOP), se_run=hostbox.se_run)
    stdin = launch.header(b"", None, NONCE, tests=mode == launch.TESTS)
    if mode == launch.TESTS:
        stdin += launch.test_frame(b"", 5000)
    output, _ = one_run(hostbox.run(argv, stdin).stdout)
    assert output == b"environ b'Permission denied'\nmem b'Permission denied'\nnonce False False\n"


# --- tests: one run per frame, by se-run (and the Python launcher's first, by its warm child) ------

# The test program: its arguments and its stdin; `sleep`: stays past its timeout (once it made the
# file `sleeping`); `background`: leaves a child that would write into the next test; `ignore`:
# reads nothing.
TESTS_PROGRAM = """
case $1 in
sleep) touch sleeping; sleep 10 ;;
background) (sleep 0.3; echo leaked) & echo "started"; echo "to stderr" >&2 ;;
ignore) exit 0 ;;
*) printf '%s|' "$@"; cat; echo "err $1" >&2 ;;
esac
"""
# The same in Python, for the Python launcher, whose first test is its warm child's.
PY_TESTS_PROGRAM = b"""
import os, sys, time
args = sys.argv[1:]
first = args[0] if args else ""
if first == "sleep":
    open("sleeping", "w").close()
    time.sleep(10)
elif first == "background":
    if os.fork() == 0:
        time.sleep(0.3)
        print("leaked")
        os._exit(0)
    print("started")
    print("to stderr", file=sys.stderr)
elif first != "ignore":
    sys.stdout.write("".join(arg + "|" for arg in args) or "|")
    os.write(1, sys.stdin.buffer.read())
    print("err", first, file=sys.stderr)
"""
LAUNCHERS = ["sh", "python"]


def launcher_of(box: HostBox, kind: str, merge: bool = False) -> tuple[list[str], bytes, dict]:
    """A launcher in TESTS mode with the test program: its argv, its header and environment."""
    if kind == "sh":
        return sh(box, TESTS_PROGRAM), launch.header(b"", None, NONCE, merge, tests=True), {}
    header = launch.header(PY_TESTS_PROGRAM, None, NONCE, merge, tests=True)
    return python(box), header, {"SANDBOX_SOURCE": "main.py"}


def run_tests(box: HostBox, frames: bytes, merge: bool = False, kind: str = "sh"):
    argv, header, env = launcher_of(box, kind, merge)
    return box.run(argv, header + frames, **env)


@pytest.mark.parametrize("kind", LAUNCHERS)
def test_each_frame_is_a_run_of_its_own(hostbox, kind):
    frames = (
        launch.test_frame(b"one\n", 5000, ["a", "b c"])
        + launch.test_frame(b"", 200, ["sleep"])
        + launch.test_frame(b"", 5000, ["background"])
        + launch.test_frame(b"three\n", 5000, ["last"])
    )
    done = run_tests(hostbox, frames, kind=kind)
    outputs, marks = exits(done.stdout)
    assert outputs == [b"a|b c|one\n", b"", b"started\n", b"last|three\n", b""]
    ended = [(m.code, m.signal, m.flag) for m in marks]
    assert ended == [(0, 0, "-"), (-1, 9, "timeout"), (0, 0, "-"), (0, 0, "-")]
    assert 200_000 <= marks[1].wall_us < 2_000_000
    # The background child was killed with its run: it wrote nothing into the next one.
    assert b"leaked" not in done.stdout + done.stderr
    # stderr, a stream of its own: each run's share of it ends with an END mark.
    assert done.stderr == b"err a\n" + END + END + b"to stderr\n" + END + b"err last\n" + END
    assert done.returncode == 0


# The first frame, which the Python launcher's warm child runs, as each of the kinds above.
FIRST = {
    "args": (launch.test_frame(b"one\n", 5000, ["a", "b c"]), b"a|b c|one\n", (0, 0, "-"), b"err a\n"),
    "timeout": (launch.test_frame(b"", 200, ["sleep"]), b"", (-1, 9, "timeout"), b""),
    "background": (launch.test_frame(b"", 5000, ["background"]), b"started\n", (0, 0, "-"), b"to stderr\n"),
    "no args": (launch.test_frame(b"", 5000), b"|", (0, 0, "-"), b"err \n"),
}


@pytest.mark.parametrize("kind", LAUNCHERS)
@pytest.mark.parametrize("first", FIRST)
def test_the_first_frame_is_a_run_as_any_other(hostbox, kind, first):
    frame, output, ended, stderr = FIRST[first]
    started = time.monotonic()
    done = run_tests(hostbox, frame + launch.test_frame(b"three\n", 5000, ["last"]), kind=kind)
    outputs, marks = exits(done.stdout)
    assert outputs == [output, b"last|three\n", b""], done.stderr
    assert [(m.code, m.signal, m.flag) for m in marks] == [ended, (0, 0, "-")]
    assert done.stderr == stderr + END + b"err last\n" + END
    assert b"leaked" not in done.stdout + done.stderr and done.returncode == 0
    if first == "timeout":
        assert 200_000 <= marks[0].wall_us < 2_000_000
        assert time.monotonic() - started < 5


# What a program sees of its process: its arguments, its stdin (a pipe), its signals' mask and
# handlers, its process group, its open files.
SEEN = b"""
import os, signal, stat, sys
handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGUSR2, signal.SIGALRM, signal.SIGCHLD)]
print(sys.argv[1:], stat.S_ISFIFO(os.fstat(0).st_mode), sys.stdin.read(), os.getpgrp() == os.getppid())
print(signal.pthread_sigmask(signal.SIG_BLOCK, []), handlers, sorted(os.listdir("/proc/self/fd")))
"""


def test_the_python_launchers_first_test_sees_what_a_fresh_interpreter_does(hostbox):
    frame = launch.test_frame(b"in\n", 5000, ["x", "é y"])
    stdin = launch.header(SEEN, None, NONCE, tests=True) + frame + frame
    done = hostbox.run(python(hostbox), stdin, SANDBOX_SOURCE="main.py")
    outputs, marks = exits(done.stdout)
    assert outputs[0] == outputs[1] and [m.code for m in marks] == [0, 0], done.stdout + done.stderr
    assert outputs[0].startswith("['x', 'é y'] True in\n True\n".encode()), outputs[0]
    # The first in the warm child: the interpreter's start was paid before the code came.
    assert marks[0].cpu_us * 2 < marks[1].cpu_us, marks


@pytest.mark.parametrize("kind", LAUNCHERS)
def test_merged_the_runs_have_no_end_mark(hostbox, kind):
    frames = launch.test_frame(b"x\n", 5000, ["one"]) + launch.test_frame(b"y\n", 5000, ["two"])
    done = run_tests(hostbox, frames, merge=True, kind=kind)
    outputs, marks = exits(done.stdout)
    assert outputs == [b"one|x\nerr one\n", b"two|y\nerr two\n", b""]
    assert len(marks) == 2 and done.stderr == b""


@pytest.mark.parametrize("kind", LAUNCHERS)
def test_a_big_stdin_unread_blocks_nothing_and_counts_in_no_figure(hostbox, kind):
    frames = launch.test_frame(b"x" * (20 << 20), 5000, ["ignore"]) + launch.test_frame(b"y\n", 5000, ["z"])
    done = run_tests(hostbox, frames, kind=kind)
    outputs, [ignored, after] = exits(done.stdout)
    assert (ignored.code, ignored.flag, outputs[1]) == (0, "-", b"z|y\n")
    # The frame's stdin was held by se-run (or the launcher): none of its 20 MiB is in the
    # program's resident set (a shell's, or an interpreter's).
    assert ignored.maxrss_kib < (10 << 10 if kind == "sh" else 20 << 10)


@pytest.mark.parametrize("kind", LAUNCHERS)
def test_a_big_stdin_is_read_whole(hostbox, kind):
    data = os.urandom(3 << 20)
    done = run_tests(hostbox, launch.test_frame(data, 5000, ["a"]), kind=kind)
    outputs, [mark] = exits(done.stdout)
    assert (outputs[0], mark.code) == (b"a|" + data, 0)


@pytest.mark.parametrize("kind", LAUNCHERS)
def test_an_abort_ends_the_current_run_and_the_next_runs(hostbox, kind):
    argv, header, env = launcher_of(hostbox, kind)
    launcher = hostbox.popen(argv, **env)
    try:
        launcher.stdin.write(header)
        launcher.stdin.write(launch.test_frame(b"", 20000, ["sleep"]))
        launcher.stdin.flush()
        # The program is running once it made its file: the abort is then for it.
        deadline = time.monotonic() + 10
        while not (hostbox.workdir / "sleeping").exists():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(tini_pid(launcher), getattr(signal, launch.ABORT_SIGNAL))
        launcher.stdin.write(launch.test_frame(b"after\n", 5000, ["next"]))
        launcher.stdin.close()
        outputs, marks = exits(launcher.stdout.read())
        assert [m.flag for m in marks] == ["abort", "-"]
        assert outputs[1] == b"next|after\n"
        assert launcher.wait(10) == 0
    finally:
        stop(launcher)


def cmdlines(launcher) -> list[bytes]:
    """The command line of every process in the box, from the host's /proc."""
    found, todo = [], [launcher.pid]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                found.append(f.read())
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                todo += [int(child) for child in f.read().split()]
        except OSError:
            continue
    return found


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (b"1 2\n", b"se-run: a test frame's header is not"),
        (b"5 100 0\nab", b"se-run: the input ended inside a test frame"),
        (b"0 100 1\nx", b"se-run: a test's arguments must each end with NUL"),
        (f"{(64 << 20) + 1} 100 0\n".encode(), b"se-run: a test's stdin holds more than"),
    ],
    ids=["header", "short", "args", "big"],
)
@pytest.mark.parametrize("kind", LAUNCHERS)
def test_a_bad_frame_ends_se_run_with_125(hostbox, frames, message, kind):
    done = run_tests(hostbox, frames, kind=kind)
    assert done.returncode == 125
    # The Python launcher reads the first frame itself, and says it as se-run does.
    assert done.stderr.startswith(message if kind == "sh" else message.replace(b"se-run:", b"launcher:"))


@pytest.mark.parametrize("kind", LAUNCHERS)
def test_without_a_frame_the_tests_end_with_0(hostbox, kind):
    done = run_tests(hostbox, b"", kind=kind)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


# --- the Python launcher -------------------------------------------------------------------------


def python(box: HostBox) -> list[str]:
    return ["python3", "-u", "-c", launch.python_launcher(se_run=box.se_run)]


def test_the_python_launcher_takes_the_header_then_runs_the_program(hostbox):
    code = b"import os, sys\nprint('ran', input(), sys.argv, sorted(k for k in os.environ if 'SANDBOX' in k))"
    # The program's files are private, as under the other launchers (it was forked before the
    # launcher's umask once).
    code += b"\nprint(oct(os.umask(0)))"
    files = [("pkg/mod.py", b"X = 1\n")]
    stdin = launch.header(code, None, NONCE, files=files) + b"input\n"
    done = hostbox.run(python(hostbox), stdin, SANDBOX_SOURCE="main.py")
    output, mark = one_run(done.stdout)
    assert output == f"ran input {[str(hostbox.workdir / 'main.py')]} []\n0o77\n".encode(), done.stderr
    assert (mark.code, done.returncode) == (0, 0)
    assert (hostbox.workdir / "pkg/mod.py").read_bytes() == b"X = 1\n"


# What python3 main.py prints: from the program's own frame on, none of the launcher's.
TRACEBACK = b'Traceback (most recent call last):\n  File "MAIN", line 1, in <module>\n'
TRACEBACK += b"    raise ValueError('no')\nValueError: no\n"


@pytest.mark.parametrize(
    ("code", "status", "sig", "stderr"),
    [
        (b"import sys\nsys.exit(3)", 3, 0, b""),
        (b"raise ValueError('no')", 1, 0, TRACEBACK),
        (b"raise KeyboardInterrupt", 130, 2, b"KeyboardInterrupt\n"),
    ],
    ids=["exit", "error", "interrupt"],
)
def test_the_python_launcher_ends_as_python3_would(hostbox, code, status, sig, stderr):
    done = hostbox.run(python(hostbox), launch.header(code, None, NONCE), SANDBOX_SOURCE="main.py")
    _, mark = one_run(done.stdout)
    assert (done.returncode, mark.signal) == (status, sig)
    # stderr, a stream of its own, ends with the END mark (launch's END), after all the program's.
    expected = stderr.replace(b"MAIN", str(hostbox.workdir / "main.py").encode()) + END
    assert done.stderr.endswith(expected) and done.stderr.count(b"\x1eSANDBOX-") == 1


def test_the_python_launcher_keeps_its_own_objects_out_of_the_programs_collections(hostbox):
    # Frozen before the fork: the program's exit does not walk (and copy) the launcher's pages;
    # the program's own garbage, cycles and finalizers included, is collected as ever.
    code = (
        b"import gc\nclass C:\n    def __del__(self): print('collected')\n"
        b"a = C(); a.me = a; del a\nprint(gc.get_freeze_count() > 0, gc.collect() > 0)"
    )
    done = hostbox.run(python(hostbox), launch.header(code, None, NONCE), SANDBOX_SOURCE="main.py")
    output, mark = one_run(done.stdout)
    assert (output, mark.code) == (b"collected\nTrue True\n", 0), done.stderr


def test_the_python_launcher_lingers_after_its_marks_unless_the_program_was_killed(hostbox):
    # Up until the engine removes the sandbox (launch's LINGER), its marks written first; a
    # SIGKILL's sandbox stops at once, for the runtime to say whether the memory limit did it.
    launcher = ["python3", "-u", "-c", launch.python_launcher(se_run=hostbox.se_run, linger=1.0)]
    for code, lingers in ((b"print('done')", True), (b"import os, signal\nos.kill(os.getpid(), 9)", False)):
        started = time.monotonic()
        done = hostbox.run(launcher, launch.header(code, None, NONCE), SANDBOX_SOURCE="main.py")
        took = time.monotonic() - started
        _, mark = one_run(done.stdout)
        assert done.stderr.endswith(END)
        assert (took >= 1.0) is lingers, (code, took, mark)


def test_the_python_launcher_measures_the_program_alone(hostbox):
    done = hostbox.run(python(hostbox), launch.header(SPIN.encode(), None, NONCE), SANDBOX_SOURCE="main.py")
    _, mark = one_run(done.stdout)
    # The interpreter's start was before the header: its time is not the program's.
    assert 250_000 <= mark.cpu_us < 450_000, mark


def test_the_python_launcher_keeps_the_nonce_from_the_program(hostbox):
    done = hostbox.run(python(hostbox), launch.header(SNOOP.encode(), None, NONCE), SANDBOX_SOURCE="main.py")
    output, _ = one_run(done.stdout)
    assert output == b"environ b'Permission denied'\nmem b'Permission denied'\nnonce False False\n"


def test_the_python_launchers_first_test_cannot_read_the_nonce(hostbox):
    # A stdin bigger than its pipe: a writer forked from the launcher, which holds the nonce, feeds
    # it, and it is as closed to the program as the launcher (not dumpable). PID 1, docker-init,
    # holds nothing of it.
    code = SNOOP + (
        "others = [p for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, os.getpid())]\n"
        "print(len(others) >= 2, [p for p in others if read(f'/proc/{p}/mem') != b'Permission denied'])\n"
    )
    stdin = launch.header(code.encode(), None, NONCE, tests=True) + launch.test_frame(b"x" * (1 << 20), 5000)
    done = hostbox.run(python(hostbox), stdin, SANDBOX_SOURCE="main.py")
    outputs, [mark] = exits(done.stdout)
    assert outputs[0] == (
        b"environ b'Permission denied'\nmem b'Permission denied'\nnonce False False\nTrue []\n"
    ), done.stderr


def test_the_python_launcher_runs_tests_through_se_run(hostbox):
    code = b"import sys\nprint(sys.argv[1:], input())"
    stdin = launch.header(code, None, NONCE, tests=True)
    stdin += launch.test_frame(b"one\n", 5000, ["a"]) + launch.test_frame(b"two\n", 5000)
    done = hostbox.run(python(hostbox), stdin, SANDBOX_SOURCE="main.py")
    outputs, marks = exits(done.stdout)
    assert outputs == [b"['a'] one\n", b"[] two\n", b""], done.stderr
    assert [m.code for m in marks] == [0, 0] and done.returncode == 0
    assert done.stderr == END + END


def test_the_compile_stage_writes_stderr_reads_nothing_is_measured_and_kills_nothing_else(hostbox):
    compiler = launch.compile_command(("sh", "-c", "echo out; echo err >&2; cat; umask"), hostbox.se_run)
    # The launcher waits beside the compile stage, as a process of the same user: it must live on.
    script = 'sleep 30 & waiting=$!; "$@"; echo "rc=$?" >&2; kill -0 "$waiting" && echo "launcher alive" >&2'
    done = hostbox.run(["sh", "-c", script, "box", *compiler], b"stdin", SANDBOX_NONCE=NONCE)
    assert done.stdout == b""
    (output, after), [mark] = exits(done.stderr)
    assert output == b"out\nerr\n0077\n"
    assert (mark.code, mark.signal, mark.flag) == (0, 0, "-") and mark.wall_us > 0
    assert after == b"rc=0\nlauncher alive\n"


# --- the fork launcher (Node's) ------------------------------------------------------------------

# A stand-in for the warm node (launchers/node_warm.js), in sh: started before the header, it
# says so in a file, waits for the go on fd 3 (EOF: ends quietly), then is the program: its source,
# then its input, then exit 3.
WARM = (
    "sh",
    "-c",
    'echo "$$" > started; read -r go <&3; [ "$go" = g ] || exit 0; exec 3<&-; '
    'echo "ran $(cat "$1") ${NODE_OPTIONS-unset} ${SANDBOX_HELD_NODE_OPTIONS-}"; cat; echo oops >&2; exit 3',
    "warm",
)
# The run command, for se-run: its last argument is the program's file, which the warm one gets.
RUN = ("sh", "-c", 'echo "cold $(cat "$0") $*"; cat', "main.js")


def fork(box: HostBox) -> list[str]:
    return ["perl", "-e", launch.fork_launcher(RUN, se_run=box.se_run, warm=WARM)]


def test_the_fork_launcher_lets_its_warm_child_go_and_reports_its_end(hostbox):
    stdin = launch.header(b"CODE", None, NONCE, files=[("lib/a.js", b"A")]) + b"input\n"
    done = hostbox.run(fork(hostbox), stdin, SANDBOX_SOURCE="main.js", NODE_OPTIONS="--require x")
    output, mark = one_run(done.stdout)
    # NODE_OPTIONS is held back from the child until its go (node_warm.js gives it back).
    assert output == b"ran CODE unset --require x\ninput\n", done.stderr
    assert (mark.code, mark.signal, mark.flag, done.returncode) == (3, 0, "-", 3)
    # stderr, a stream of its own, ends with the END mark (launch's END), after all the program's.
    assert done.stderr == b"oops\n" + END and mark.wall_us > 0
    assert (hostbox.workdir / "lib/a.js").read_bytes() == b"A"
    assert (hostbox.workdir / "lib").stat().st_mode & 0o777 == 0o700
    assert (hostbox.workdir / "main.js").stat().st_mode & 0o777 == 0o600
    assert (hostbox.workdir / "started").exists()


def test_the_fork_launcher_lingers_after_its_marks(hostbox):
    # As the Python launcher does (launch's LINGER), its marks written first.
    launcher = ["perl", "-e", launch.fork_launcher(RUN, se_run=hostbox.se_run, warm=WARM, linger=1.0)]
    started = time.monotonic()
    done = hostbox.run(launcher, launch.header(b"CODE", None, NONCE) + b"input\n", SANDBOX_SOURCE="main.js")
    _, mark = one_run(done.stdout)
    assert mark.code == 3 and done.stderr.endswith(END)
    assert time.monotonic() - started >= 1.0


def test_the_fork_launcher_merges_through_se_run(hostbox):
    stdin = launch.header(b"CODE", None, NONCE, merge_stderr=True) + b"input\n"
    done = hostbox.run(fork(hostbox), stdin, SANDBOX_SOURCE="main.js")
    output, mark = one_run(done.stdout)
    assert (output, mark.code, done.stderr) == (b"cold CODE \ninput\n", 0, b"")


def test_the_fork_launcher_runs_tests_through_se_run(hostbox):
    stdin = launch.header(b"CODE", None, NONCE, tests=True)
    stdin += launch.test_frame(b"one\n", 5000, ["a"]) + launch.test_frame(b"two\n", 5000)
    done = hostbox.run(fork(hostbox), stdin, SANDBOX_SOURCE="main.js")
    outputs, marks = exits(done.stdout)
    assert outputs == [b"cold CODE a\none\n", b"cold CODE \ntwo\n", b""], done.stderr
    assert [m.code for m in marks] == [0, 0] and done.returncode == 0
    assert done.stderr == END + END


def test_without_a_header_the_fork_launcher_and_its_child_end_quietly(hostbox):
    done = hostbox.run(fork(hostbox), b"", SANDBOX_SOURCE="main.js")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


@pytest.mark.parametrize(
    "stdin", [b"5 80 24 0 " + NONCE.encode() + b" 0 once\nabc", b"3 80 24 0 n 1 once\nabc5 /x\n"]
)
def test_a_short_code_or_a_name_outside_ends_the_fork_launcher_with_126(hostbox, stdin):
    assert hostbox.run(fork(hostbox), stdin, SANDBOX_SOURCE="main.js").returncode == 126


# The waiting program of a compiled language: says whether what the compile stage left running
# (the prelude's sleep, here) still is, then its source. It waits in a builtin: a process of its
# own (dd) would be among what the launcher kills at the go, as Node's threads are not.
COMPILED_WARM = (
    "sh",
    "-c",
    'read -r go <&3; [ "$go" = g ] || exit 0; exec 3<&-; '
    'if kill -0 "$(cat leftover)" 2>/dev/null; then echo alive; else echo gone; fi; cat "$1"',
    "warm",
)
PRELUDE = ("(sleep 30 </dev/null >/dev/null 2>&1 & echo $! > leftover)",)


def compiled_fork(box: HostBox) -> list[str]:
    return ["perl", "-e", launch.fork_launcher(RUN, se_run=box.se_run, warm=COMPILED_WARM, prelude=PRELUDE)]


def test_with_a_compile_stage_the_fork_launcher_marks_the_source_and_waits_for_the_go(hostbox):
    process = hostbox.popen(compiled_fork(hostbox), SANDBOX_SOURCE="main.js")
    try:
        process.stdin.write(launch.header(b"CODE", None, NONCE))
        process.stdin.flush()
        started = launch.mark(launch.STARTED, NONCE)
        assert process.stdout.read(len(started)) == started
        # The prelude ran before the header; the source is in place before the mark.
        assert (hostbox.workdir / "leftover").exists()
        assert (hostbox.workdir / "main.js").read_bytes() == b"CODE"
        stdout, stderr = process.communicate(launch.GO, timeout=20)
    finally:
        process.kill()
        process.wait()
    output, mark = one_run(stdout)
    # What the compile stage left is gone before the program starts; the program was spared.
    assert (output, mark.code, process.returncode) == (b"gone\nCODE", 0, 0), stderr


def test_after_a_failed_compile_the_fork_launcher_ends_with_its_code_and_runs_nothing(hostbox):
    stdin = launch.header(b"CODE", None, NONCE) + launch.halt(2)
    done = hostbox.run(compiled_fork(hostbox), stdin, SANDBOX_SOURCE="main.js")
    assert (done.stdout, done.returncode) == (launch.mark(launch.STARTED, NONCE), 2)


# --- the fork launcher with the child's script a FIFO (PHP's) -------------------------------------

# A stand-in for `php main.php`: sh opens its script (the FIFO: its open waits for the launcher)
# and runs it.
FIFO_RUN = ("sh", "main.sh")
FIFO_WARM = ("sh",)


def fifo_fork(box: HostBox) -> list[str]:
    return ["perl", "-e", launch.fork_launcher(FIFO_RUN, se_run=box.se_run, warm=FIFO_WARM, script_fifo=True)]


SCRIPT = b'echo "ran $0, a $(stat -c %F "$0") of $(wc -c < "$0") bytes"; cat; echo oops >&2; exit 3\n'


def test_the_fork_launcher_hands_its_child_the_program_through_the_script_fifo(hostbox):
    stdin = launch.header(SCRIPT, None, NONCE) + b"input\n"
    done = hostbox.run(fifo_fork(hostbox), stdin, SANDBOX_SOURCE="main.sh")
    output, mark = one_run(done.stdout)
    # The program finds its own file whole, a regular file, as a plain run does.
    assert output == b"ran main.sh, a regular file of %d bytes\ninput\n" % len(SCRIPT), done.stderr
    assert (mark.code, mark.signal, mark.flag, done.returncode) == (3, 0, "-", 3)
    assert done.stderr == b"oops\n" + END
    assert (hostbox.workdir / "main.sh").read_bytes() == SCRIPT
    assert (hostbox.workdir / "main.sh").stat().st_mode & 0o777 == 0o600


def test_with_a_script_fifo_tests_run_through_se_run_and_the_child_runs_nothing(hostbox):
    stdin = launch.header(SCRIPT, None, NONCE, tests=True) + launch.test_frame(b"one\n", 5000)
    done = hostbox.run(fifo_fork(hostbox), stdin, SANDBOX_SOURCE="main.sh")
    outputs, marks = exits(done.stdout)
    # Once, by se-run's fresh `sh main.sh`: the waiting child read an empty script.
    assert outputs == [b"ran main.sh, a regular file of %d bytes\none\n" % len(SCRIPT), b""], done.stderr
    assert [m.code for m in marks] == [3]


def test_with_a_script_fifo_and_no_header_the_launcher_and_its_child_end_quietly(hostbox):
    done = hostbox.run(fifo_fork(hostbox), b"", SANDBOX_SOURCE="main.sh")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
