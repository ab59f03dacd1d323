"""The launcher protocol: how a program reaches its sandbox and how the sandbox reports its stages.

This module is its only owner. The launchers (the POSIX `sh` script built here, and the Python
and Node launchers in `launchers/`, which get these constants prepended) and the stream parser in
`framing` use it; no executor knows its details, so any runtime that can start a process with
stdin and stdout, and run a second process in the same sandbox, reuses it as it is.

In, on the sandbox's stdin: a header line `<bytes> <cols> <rows> <merge> <nonce> <files> <mode>`,
then exactly <bytes> of code, then <files> further files, each `<bytes> <name>\\n` and its bytes;
with a compile stage, one line after them: empty to let the program start (the go), or the
compiler's exit code to end the sandbox with it; then the program's input (ONCE), or one test
frame per run (TESTS, see test_frame).
Out, on its stdout: marks `\\x1eSANDBOX-<NAME>[ <nonce>]`, each a line of its own: READY (a tty is
raw and may take the header; written before the header, so without the nonce), STARTED <nonce>
(the source is in place and a tty is sane again: the compile stage may start, the program's
input may come), and after each run EXIT <nonce> (and END <nonce> on stderr; see EXIT below).
The program runs as a child of se-run (images/runtime/se-run.c), or of the Python launcher, which
reports its end and its usage in those marks.

Who can forge what. Anything in the sandbox can write to its stdout (through /proc/1/fd/1, or a
tty) and read what every process of its own uid and gid holds (/proc/<pid>/environ, mem, fd/*).
So a mark is believed only while none of the user's code can have run: the parser takes the
marks the launcher writes before the program or the compiler starts, and passes everything after
them on as output, look-alikes included. A compile stage runs the user's code (Template Haskell,
compiler plugins, build scripts), so the launcher does not run it: the executor runs
`compile_command` as a process of its own beside the launcher (Docker: `docker exec`) in another
group (executor.COMPILE_GID), which makes it another principal to the kernel (ptrace and
/proc/<pid>/environ, mem and fd/* need every uid and gid to match): it can neither read the
launcher or PID 1 nor open their stdin and stdout (a tty's terminal it can open, but not type
into: TIOCSTI needs the terminal to be its own; being the same uid, it can signal them, which
only ends its own session). How it ended is its se-run's EXIT mark, under a nonce of its own
that the compiler cannot learn (se-run is not dumpable, and clears it before the compiler starts);
the program starts only on the go, a line on stdin that only the engine can write, after it
lowered the limits to the run's. A warm pool's compile stage is started ahead (see COMPILE_OUT),
the same principal, its nonce given before any code of the user's is there: its output reaches
the engine through the launcher, or on a terminal through the sandbox's (see COMPILE_TTY). The
launcher's nonce comes in the header, never in the environment (which /proc/1/environ shows) or
the runtime's labels, so no mark can be written ahead of time. The marks
written after the program started (EXIT, END) come from a process that holds the nonce and is not
dumpable (prctl PR_SET_DUMPABLE 0: its /proc files are root's), which the program never was: the
sh launcher hands the nonce to se-run as it execs it, which clears it before it forks the program;
the Python and Node launchers fork the program's process before they read the header.
TypeScript's warm compiler (see launch_typescript) starts before the header too, and runs none of
the user's code.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping, Sequence

from .executor import SandboxSpec, Terminal
from .launch_typescript import TYPESCRIPT, tsc_arguments, typescript_prelude

# The environment that carries the protocol's per-sandbox facts to the launcher; nothing secret.
ENV_SOURCE = "SANDBOX_SOURCE"
# docker-init (tini) and the like: pass signals to the program's whole process group.
ENV_KILL_GROUP = "TINI_KILL_PROCESS_GROUP"
# How the sh launcher hands the nonce to se-run as it execs it (never the program's environment).
ENV_NONCE = "SANDBOX_NONCE"
# The runtime layer's launcher of programs (images/runtime/se-run.c): runs the program as its
# child, once or per test frame, and writes its EXIT mark; `se-run once|tests -- command...`.
SE_RUN = "/usr/local/bin/se-run"

MARK_START = b"\x1eSANDBOX-"
READY = "READY"
STARTED = "STARTED"
# Written by the launcher once the program (one test's run, in TESTS mode) has ended and every
# other process of the sandbox's user is gone, on stdout:
#   EXIT <nonce> <code> <signal> <cpu us> <max rss KiB> <wall us> <flag>
# code: its exit status (-1 when a signal ended it); signal: that signal's number (0: none);
# cpu: user plus system time of it and its waited-for children (wait4's rusage); max rss: the
# largest resident set among them; wall: from its start to its end; flag: `-`, `timeout` (the
# launcher killed it at the frame's timeout) or `abort` (killed on SIGUSR2, see ABORT_SIGNAL).
# In TESTS mode, when stderr is a stream of its own (no tty, not merged), END <nonce> follows on
# stderr, so that each stream's share of a test is known. The Python and fork launchers write it
# in ONCE mode too, so that a reader knows stderr is complete at once (the runtime may copy the
# two streams apart) rather than after a quiet moment; se-run does not, and a reader must not
# wait for it there. The nonce makes them unforgeable: the launcher holds it in a process the
# program cannot read (not dumpable; see the module's doc).
EXIT = "EXIT"
END = "END"
# After a single run's marks, the Python and fork launchers keep the sandbox up, idle, for at most this
# long, until the engine removes it at a quiet moment (see removals): a sandbox that stopped at
# once would have the runtime tear it down (containerd's and dockerd's handling of its exit,
# runc's cgroup) while the next session starts. Not after a SIGKILL, which only the runtime can
# explain (the memory limit's, see session.exit_status): the sandbox then stops at once.
LINGER = 10.0
# Sent to the launcher's process group (the runtime's signal), it kills the current test's run.
ABORT_SIGNAL = "SIGUSR2"
# A mark is a short line: a \x1e further back than this in the output begins none.
MARK_MAX = 64

_LAUNCHERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launchers")


def new_nonce() -> str:
    return secrets.token_hex(8)


def header(
    code: bytes,
    terminal: Terminal | None,
    nonce: str,
    merge_stderr: bool = False,
    files: Sequence[tuple[str, bytes]] = (),
    tests: bool = False,
) -> bytes:
    """What the launcher reads first: the code's size, the terminal's, whether stderr goes to
    stdout (1) or not (0), the nonce of its marks, how many more files follow the code, and the
    mode (ONCE: the program runs once on the sandbox's stdin; TESTS: once per test frame); then
    the code, then each further file as `<bytes> <name>\n` and its bytes."""
    size = terminal or Terminal()
    mode = TESTS if tests else ONCE
    line = f"{len(code)} {size.cols} {size.rows} {int(merge_stderr)} {nonce} {len(files)} {mode}\n"
    extra = b"".join(f"{len(content)} {name}\n".encode() + content for name, content in files)
    return line.encode() + code + extra


# The modes of a header: one run on the sandbox's own stdin (a session, interactive), or one run
# per test frame (a batch run), each a fresh process with the frame's stdin and arguments (the
# Python launcher's first: its warm child, which has run nothing yet).
ONCE = "once"
TESTS = "tests"
# se-run's mode for the compile stage: measured as ONCE, but beside the waiting launcher, which it
# must not kill (see images/runtime/se-run.c).
COMPILE = "compile"


def test_frame(stdin: bytes, timeout_ms: int, args: Sequence[str] = ()) -> bytes:
    """In TESTS mode, one run of the program: `<stdin bytes> <timeout ms> <args bytes>\n`, then
    the arguments, each ended by NUL, then its stdin (which the program gets, then EOF). The
    launcher kills the run after the timeout (flag `timeout` in its EXIT mark; 0: none). EOF on the
    sandbox's stdin where a frame would begin ends the launcher (exit 0)."""
    argv = b"".join(arg.encode() + b"\0" for arg in args)
    return f"{len(stdin)} {timeout_ms} {len(argv)}\n".encode() + argv + stdin


# After a compile stage, the line that lets the program start.
GO = b"\n"


def halt(exit_code: int) -> bytes:
    """After a failed compile stage, the line that ends the sandbox with the compiler's code."""
    return f"{exit_code}\n".encode()


def mark(name: str, nonce: str = "") -> bytes:
    """A mark as a launcher writes it."""
    return MARK_START + f"{name} {nonce}".rstrip().encode() + b"\n"


def mark_pattern(nonce: str) -> re.Pattern[bytes]:
    """The STARTED mark of this nonce, as it arrives (a tty turns \\n into \\r\\n)."""
    return re.compile(re.escape(mark(STARTED, nonce)[:-1]) + rb"\r?\n")


def marks_expected(tty: bool, compiles: bool) -> int:
    """How many marks the parser takes after the header: STARTED, when a tty or a compile stage
    waits for it."""
    return int(tty or compiles)


def environment(spec: SandboxSpec) -> dict[str, str]:
    """The sandbox's environment: the language's, and what its launcher needs."""
    env = dict(spec.env)
    env[ENV_SOURCE] = spec.source_file
    # This is how a client's SIGINT reaches every process of the program, not only the first.
    env[ENV_KILL_GROUP] = "1"
    if spec.tty:
        env.setdefault("TERM", "xterm-256color")
    return env


def ends_stderr(command: Sequence[str]) -> bool:
    """Whether a sandbox's command (see command) writes END on a single run's separate stderr:
    the Python and fork launchers do (see END); se-run, under the sh launcher, per test only."""
    return command[0] != "/bin/sh"


def command(spec: SandboxSpec) -> list[str]:
    """The sandbox's command: the language's own launcher where it has one, in a warm pool's
    sandbox (one made for its session starts the interpreter when the code comes either way, and
    the launcher's own start would only add to it), else `sh`."""
    if spec.session_id is not None and spec.launcher in ("python", NODE, RUBY, PHP):
        return sh_launcher(spec.command, spec.compile is not None, spec.tty)
    if spec.launcher == "python" and not spec.compile:
        # The interpreter starts now and waits for the program: a warm sandbox skips its start-up.
        return ["python3", "-u", "-c", python_launcher(linger=LINGER)]
    if spec.launcher == NODE and not spec.compile:
        # Node starts now and waits for the program: a warm sandbox skips its start-up.
        return ["perl", "-e", fork_launcher(spec.command, linger=LINGER)]
    if spec.launcher == RUBY and not spec.compile:
        # So does Ruby, under the same launcher (see launchers/ruby_warm.rb).
        return ["perl", "-e", fork_launcher(spec.command, warm=ruby_warm(), linger=LINGER)]
    if spec.launcher == PHP and not spec.compile:
        # PHP starts as `php main.php` now, and waits in the open of its script, a FIFO.
        script = fork_launcher(spec.command, warm=spec.command[:-1], script_fifo=True, linger=LINGER)
        return ["perl", "-e", script]
    if spec.launcher == TYPESCRIPT and spec.compile:
        # The compiler and Node start now, and wait for the code: a warm sandbox skips both.
        prelude = typescript_prelude(tsc_arguments(spec.compile))
        return ["perl", "-e", fork_launcher(spec.command, prelude=prelude, linger=LINGER)]
    return sh_launcher(spec.command, spec.compile is not None, spec.tty, ahead=spec.session_id is None)


def sh_launcher(
    command: tuple[str, ...],
    compiles: bool = False,
    tty: bool = False,
    se_run: str = SE_RUN,
    prelude: Sequence[str] = (),
    ahead: bool = True,
) -> list[str]:
    """A POSIX sh script that takes the program and its files from stdin and execs se-run on it
    (once, or per test frame: the header's mode); with a compile stage, once the engine's go came
    (the engine runs the compile stage, see compile_command). The prelude's lines run before
    the header is read: what they start never holds the nonce. `ahead`: a warm pool's, whose
    compile stage may be started ahead (a sandbox made for its session never has one)."""
    lines = ["umask 077"]
    if tty:
        # A terminal would echo the code and act on control characters in it: raw until it is
        # in, and say so, because the engine must not write before.
        lines.append("stty raw -echo")
        if compiles and ahead:
            # Its name, for a compile stage started ahead (see COMPILE_TTY), asked now: off the
            # session's path.
            lines.append("terminal=$(tty)")
        lines.append(f"printf '{_printf(READY)}\\n'")
    lines += [
        *prelude,
        "read -r size cols rows merge nonce files mode || exit 0",
        # GNU head reads no byte past the count, so what follows stays in stdin; at EOF it
        # stops short without failing, hence the count.
        f'head -c "$size" > "${ENV_SOURCE}" || exit 126',
        f'[ "$(wc -c < "${ENV_SOURCE}")" -eq "$size" ] || exit 126',
        # The further files, each `<bytes> <name>`: the server checked the names (relative, no
        # `..`); they are refused here too, as nothing would be written where they point.
        'while [ "${files:-0}" -gt 0 ]; do',
        "  read -r size name || exit 126",
        "  case /$name/ in //* | */../*) exit 126 ;; esac",
        '  case $name in */*) mkdir -p "${name%/*}" || exit 126 ;; esac',
        '  head -c "$size" > "$name" || exit 126',
        '  [ "$(wc -c < "$name")" -eq "$size" ] || exit 126',
        "  files=$((files - 1))",
        "done",
    ]
    if tty:
        # Docker 20.10 ignores the size given at create and refuses a resize before start, so the
        # terminal gets its size here, before the program's first instruction. Input typed before
        # the terminal is sane again would be taken raw, so the engine holds it until this mark.
        # No job control in a sandbox's terminal: Ctrl-Z would stop the program with no way back,
        # so it is a plain character (susp undef), as it is to a program in raw mode.
        # With a compile stage, no echo until the go: input typed meanwhile is the program's.
        echo = " -echo" if compiles else ""
        lines.append(f'stty sane{echo} susp undef cols "$cols" rows "$rows"')
    if marks_expected(tty, compiles):
        # The last mark, written before any code of the user's runs (see the module's doc).
        lines.append(f"printf '{_printf(STARTED)} %s\\n' \"$nonce\"")
    lines.append(f"unset {ENV_SOURCE} {ENV_KILL_GROUP} size cols rows files name")
    # One pipe for both streams: the program's writes keep their order (a terminal is one anyway).
    lines.append('[ "$merge" != 1 ] || exec 2>&1; unset merge')
    if compiles:
        # The engine compiles meanwhile, then lowers the limits to the run's and says go (an
        # empty line), or ends the sandbox with the compiler's exit code.
        if tty:
            lines += ["read -r rc || exit 0", _TELL_TTY, '[ -z "$rc" ] || exit "$rc"', "stty echo"]
        else:
            lines += ["read -r rc || exit 0", _RELAY, '[ -z "$rc" ] || exit "$rc"']
    # The nonce goes to se-run alone, which clears it before the program starts (see se-run.c).
    lines.append(f'{ENV_NONCE}=$nonce exec {se_run} "$mode" -- "$@"')
    return ["/bin/sh", "-c", "\n".join(lines), "launch", *command]


def _printf(name: str) -> str:
    """A mark's start as a printf format in single quotes."""
    return "\\036" + MARK_START[1:].decode() + name


def compile_command(compile: tuple[str, ...], se_run: str = SE_RUN) -> list[str]:
    """The compile stage, as the executor runs it beside the launcher, in /workspace: the files
    it writes are private to the sandbox's uid as the launcher's are; its output is all stderr;
    it gets no stdin. se-run measures it and writes its EXIT mark last, after the compiler's
    output, with the nonce the executor gives it in ENV_NONCE (its own, not the launcher's)."""
    script = f'umask 077; exec {se_run} {COMPILE} -- "$@" </dev/null 1>&2'
    return ["/bin/sh", "-c", script, "compile", *compile]


# A compile stage started ahead, before the code arrives (Docker's `exec` costs some 40 ms, paid
# then, off the session's path): a process of the compile stage's group waits to open COMPILE_OUT,
# a FIFO it made, for writing, and runs the compile stage into it once the launcher opened it to
# relay it, which the engine's RELAY line after the header asks for. What the launcher relays is
# output like any other: the compile stage's EXIT mark, with its own nonce, says how it ended.
COMPILE_DIR = "/tmp/se-compile"
COMPILE_OUT = f"{COMPILE_DIR}/out"
RELAY = b"relay\n"


def _when_relayed(fifo: str, *then: str) -> str:
    """The sh launcher's part, before it reads the go (the fork launcher's is its `relay`), when
    the engine's line after the header is RELAY: `then`, once the waiter made `fifo` (a moment
    after its start; a waiter that never made it ends the sandbox)."""
    wait = [
        "n=0",
        f"until [ -p {fifo} ]; do",
        '  n=$((n + 1)); [ "$n" -le 1000 ] || exit 126; sleep 0.01',
        "done",
    ]
    return "\n".join(['if [ "$rc" = relay ]; then', *(f"  {line}" for line in (*wait, *then)), "fi"])


# The relay runs until the engine's next line, which comes once the engine read the compile
# stage's EXIT mark (all of its output before it). The shell says "Terminated" of a job it waits
# for once killed: not the program's stderr.
_RELAY = _when_relayed(
    COMPILE_OUT,
    f"cat {COMPILE_OUT} >&2 & relay=$!",
    "read -r rc || exit 0",
    '{ kill "$relay"; wait "$relay"; } 2>/dev/null',
)
# A terminal's compile stage started ahead writes into the sandbox's terminal itself, as the
# program will (a compiler colours its diagnostics and fits them to the terminal's width, as in a
# compile stage exec'd with a terminal of its own): the waiter opens it by the name the launcher
# writes into COMPILE_TTY, a FIFO the waiter made, once the code is in place. It opens it as a
# process of another session, so the terminal is not its controlling one: nothing it runs can
# type into it (TIOCSTI) to give the launcher the go (see the attack in test_compile_stage).
COMPILE_TTY = f"{COMPILE_DIR}/tty"
_TELL_TTY = _when_relayed(
    COMPILE_TTY, f'printf "%s\\n" "$terminal" > {COMPILE_TTY} || exit 126', "read -r rc || exit 0"
)


def compile_waiter(compile: tuple[str, ...], se_run: str = SE_RUN, tty: bool = False) -> list[str]:
    """compile_command, started ahead (see COMPILE_OUT): its output, all of it, into the FIFO,
    which only the sandbox's uid may open; on a terminal, into the terminal the launcher names
    (see COMPILE_TTY)."""
    if tty:
        lines = [
            f"mkdir {COMPILE_DIR} && mkfifo {COMPILE_TTY} || exit 126",
            f'read -r terminal < {COMPILE_TTY} && [ -c "$terminal" ] || exit 126',
            'exec </dev/null >"$terminal" 2>&1',
        ]
    else:
        lines = [
            f"mkdir {COMPILE_DIR} && mkfifo {COMPILE_OUT} || exit 126",
            f"exec </dev/null >{COMPILE_OUT} 2>&1",
        ]
    script = "\n".join(["umask 077", *lines, f'exec {se_run} {COMPILE} -- "$@"'])
    return ["/bin/sh", "-c", script, "compile", *compile]


def python_launcher(se_run: str = SE_RUN, linger: float = 0.0) -> str:
    """The Python launcher's source, with this protocol's constants defined before its code;
    `linger`: see LINGER (0: it ends with its program)."""
    with open(os.path.join(_LAUNCHERS, "python_launcher.py"), encoding="utf-8") as f:
        body = f.read()
    constants = {
        "ENV_SOURCE": ENV_SOURCE,
        "ENV_KILL_GROUP": ENV_KILL_GROUP,
        "ENV_NONCE": ENV_NONCE,
        "SE_RUN": se_run,
        "TESTS": TESTS,
        "MARK_READY": mark(READY),
        "MARK_STARTED": MARK_START + STARTED.encode() + b" ",
        "MARK_EXIT": MARK_START + EXIT.encode() + b" ",
        "MARK_END": MARK_START + END.encode() + b" ",
        "LINGER": linger,
    }
    return _definitions(constants) + body


def _definitions(constants: Mapping[str, str | bytes | float]) -> str:
    return "".join(f"{name} = {value!r}\n" for name, value in constants.items())


# The JavaScript launcher (launchers/fork_launcher.pl in perl, which every Debian image has): Node
# started before the program arrives (launchers/node_warm.js), forked by a launcher that reports
# as se-run does, since Node itself can neither fork nor make itself undumpable.
NODE = "node"
# Ruby's, the same way: Ruby started before the program arrives (launchers/ruby_warm.rb).
RUBY = "ruby"
# PHP's: `php main.php` started before the program arrives, its script a FIFO that the launcher
# fills at the go (its modules' start-up comes before it opens the script).
PHP = "php"
# The system calls perl-base has no function for (prctl, wait4, clock_gettime), by machine.
_SYSCALLS = {"x86_64": (157, 61, 228), "aarch64": (167, 260, 113)}


def ruby_warm() -> tuple[str, ...]:
    """The Ruby program's process for the fork launcher (its source's name comes last)."""
    with open(os.path.join(_LAUNCHERS, "ruby_warm.rb"), encoding="utf-8") as f:
        return ("ruby", "-e", f.read())


def fork_launcher(
    run: Sequence[str],
    se_run: str = SE_RUN,
    warm: Sequence[str] | None = None,
    prelude: Sequence[str] | None = None,
    linger: float = 0.0,
    script_fifo: bool = False,
) -> str:
    """The fork launcher's source for Node (or Ruby), with this protocol's constants defined before its
    code; `run` is the language's command, which se-run runs in TESTS mode; `warm` the program's
    process, which waits for the go on fd 3 (node_warm.js in Node; another in the tests). With a
    prelude (sh lines, run before the header is read), the language compiles: the launcher
    waits for the engine's go after its STARTED mark, as the sh launcher does. `linger`: see
    LINGER (0: it ends with its program)."""
    if warm is None:
        with open(os.path.join(_LAUNCHERS, "node_warm.js"), encoding="utf-8") as f:
            warm = ("node", "-e", f.read())
    with open(os.path.join(_LAUNCHERS, "fork_launcher.pl"), encoding="utf-8") as f:
        body = f.read()
    scalars = {
        "ENV_SOURCE": ENV_SOURCE,
        "ENV_KILL_GROUP": ENV_KILL_GROUP,
        "ENV_NONCE": ENV_NONCE,
        "SE_RUN": se_run,
        "TESTS": TESTS,
        "HELD": "NODE_OPTIONS",
        "PRELUDE": "\n".join(prelude or ()),
        "COMPILE_OUT": COMPILE_OUT,
        "COMPILE_TTY": COMPILE_TTY,
        "MARK_READY": mark(READY).decode(),
        "MARK_STARTED": (MARK_START + STARTED.encode() + b" ").decode(),
        "MARK_EXIT": (MARK_START + EXIT.encode() + b" ").decode(),
        "MARK_END": (MARK_START + END.encode() + b" ").decode(),
    }
    # The program's file is the run command's last argument (main.js, for TypeScript too).
    lists = {"WARM": (*warm, run[-1]), "RUN": tuple(run)}
    machines = ", ".join(f"{_perl(m)} => [{', '.join(map(str, n))}]" for m, n in _SYSCALLS.items())
    return (
        "".join(f"our ${name} = {_perl(value)};\n" for name, value in scalars.items())
        + "".join(f"our @{name} = ({', '.join(map(_perl, value))});\n" for name, value in lists.items())
        + f"our $COMPILES = {int(prelude is not None)};\n"
        + f"our $SCRIPT_FIFO = {int(script_fifo)};\n"
        + f"our $LINGER = {float(linger)!r};\n"
        + f"our %SYSCALLS = ({machines});\n"
        + body
    )


def _perl(text: str) -> str:
    """A perl string literal of text: single-quoted (nothing interpolated, newlines as they are),
    but for the control characters of the marks, which only a double-quoted one can hold."""
    if all(c.isprintable() or c == "\n" for c in text):
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return '"' + "".join(c if c.isalnum() or c in " -_" else f"\\x{{{ord(c):x}}}" for c in text) + '"'
