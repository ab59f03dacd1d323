# Runs inside a Python sandbox as `python3 -u -c <this>`: the launcher protocol of
# sandbox_engine.launch, in the interpreter that will run the program, so that a warm sandbox
# skips the interpreter's start-up. Reads stdin with os.read so that no byte of the program's
# own input is taken. ENV_*, MARK_*, SE_RUN and the modes are defined before this code by
# launch.python_launcher; the nonce of the marks comes in the header (see launch).
#
# The program runs in a child forked at once, before the header is read: it never holds the
# nonce, and waits on a pipe for the go. This process, not dumpable, keeps the nonce, waits for
# the child and writes its EXIT mark as se-run does (images/runtime/se-run.c). In TESTS mode each
# test needs a fresh process: the child runs the first test as se-run would (the frame's
# arguments and stdin, its timeout, an abort), and se-run runs `python3 -u <source>` for each
# test after it.
# ruff: noqa: F821
import os
import sys

# The terminal raw before anything slow (the imports below, the fork): a warm pool's sandbox may
# be taken, and sent its header, a moment after it started, and a header typed into a terminal
# that is not raw yet would be echoed back and taken a line at a time.
tty = os.isatty(0)
if tty and os.geteuid() != 0:
    import termios

    cooked = termios.tcgetattr(0)
    raw = termios.tcgetattr(0)
    raw[0] = 0  # iflag: no CR/NL translation, no flow control
    raw[1] &= ~termios.OPOST
    raw[3] &= ~(termios.ECHO | termios.ICANON | termios.ISIG | termios.IEXTEN)
    termios.tcsetattr(0, termios.TCSANOW, raw)
    os.write(1, MARK_READY)

import ctypes  # noqa: E402 - after the terminal is raw, see above
import gc  # noqa: E402
import runpy  # noqa: E402 - imported before the program arrives: they cost milliseconds once it has
import signal  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

# runpy.run_path's first call imports pkgutil (and with it typing and re: 6 ms here) and warms
# its own paths (0.7 ms more): paid now, before the program arrives, by a run of nothing.
runpy.run_path(os.devnull)

if os.geteuid() == 0:
    # kill(-1) as root would reach every process of the machine, were it run outside a sandbox.
    os.write(2, b"launcher: refusing to run as root: it kills every other process of its user\n")
    os._exit(125)
source = os.path.abspath(os.environ.pop(ENV_SOURCE, "main.py"))
os.environ.pop(ENV_KILL_GROUP, None)
# Before the fork: the program's files are private, as under the other launchers (launch's umask).
os.umask(0o077)
go, go_write = os.pipe()
# The first test's stdin, in TESTS mode: a pipe the child takes for its fd 0 (see _program).
test_in, test_in_write = os.pipe()
# What exists now is the launcher's, never garbage: out of the collector's sight, so that the
# child's collections (its exit's last one above all) do not touch, and copy, every page it
# inherited. That made the program's exit 2 ms slower, and with it its final state.
gc.freeze()
child = os.fork()
if child:
    os.close(go)
    os.close(test_in)
    # From here on no process of the same uid can read this one's memory (the nonce, soon).
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
else:
    os.close(go_write)
    os.close(test_in_write)
    # Until the go, a client's SIGINT ends the waiting child quietly, as it ends the launcher.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _read_exactly(size: int, fd: int = 0, short: str = "") -> bytes:
    """`size` bytes of fd; at its end before them the launcher ends: 0 at none, else 126 (or 125
    and `short`, as se-run says it, in a test frame)."""
    chunks, got = [], 0
    while got < size:
        chunk = os.read(fd, min(size - got, 1 << 20))
        if short and not chunk:
            _fail(short)
        if not chunk:
            sys.exit(0 if not got else 126)
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_line(fd: int = 0) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        line += _read_exactly(1, fd)
    return line


def _main(args):
    sys.argv = [source, *args]
    try:
        runpy.run_path(source, run_name="__main__")
    except SystemExit:
        raise
    except BaseException as exc:
        # The traceback python3 main.py would print: from the program's first frame on.
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != source:
            tb = tb.tb_next
        traceback.print_exception(type(exc), exc, tb)
        sys.stderr.flush()
        if isinstance(exc, KeyboardInterrupt):
            # As python3 does: die of SIGINT, so the exit code says so (130).
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        sys.exit(1)


def _program():
    """The child: waits for the go, which says whether stderr is merged and, for a test, its
    arguments (`<bytes>\n`, then each ended by NUL; its stdin is test_in); then is the program."""
    word = os.read(go, 1)
    args = []
    if word in (b"t", b"u"):
        length = int(_read_line(go))
        args = [os.fsdecode(arg) for arg in _read_exactly(length, go).split(b"\0")[:-1]]
        os.dup2(test_in, 0)
    os.close(go)
    os.close(test_in)
    if not word:
        os._exit(0)
    if word in (b"m", b"u"):
        os.dup2(1, 2)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # Each write of stdout and stderr is written whole (under gVisor a pipe takes 64 KiB a write):
    # the image's sitecustomize wraps them in every python3, this one included
    # (images/python/whole_writes.py).
    _main(args)


def _others_alive() -> bool:
    """Whether a process this one may signal, but PID 1 and itself, is alive (not a zombie)."""
    try:
        os.kill(-1, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    # kill(-1, 0) counts zombies, and processes of other users: /proc tells them apart.
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in (1, os.getpid()):
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
            if state not in (b"Z", b"X"):
                os.kill(int(name), 0)
                return True
        except (OSError, IndexError):
            continue
    return False


def _end_the_others():
    """As se-run: kill every other process of the user, and return once none is alive."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            return
        except PermissionError:
            pass
        if not _others_alive():
            return
        time.sleep(0.0002)


def _pass_signals():
    passed = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGTSTP")
    for name in passed + ("SIGTTIN", "SIGTTOU"):
        # The client's signals go to the whole process group: for the program, not for this one.
        signal.signal(getattr(signal, name), lambda *_: None)


def _report(nonce: bytes, merge: bool, status: int, usage, wall: float, flag: str = "-"):
    """The run's EXIT mark as se-run writes it, once no other process is left to write after it."""
    _end_the_others()
    code = os.waitstatus_to_exitcode(status)
    cpu = round((usage.ru_utime + usage.ru_stime) * 1e6)
    figures = f" {max(code, -1)} {max(-code, 0)} {cpu} {usage.ru_maxrss} {round(wall * 1e6)} {flag}\n"
    os.write(1, MARK_EXIT + nonce + figures.encode())
    if not merge and not tty:
        # stderr, a stream of its own, is complete too (see launch's END).
        os.write(2, MARK_END + nonce + b"\n")
    return code


def _run_once(merge: bool, nonce: bytes):
    """Lets the child go, waits for it, and reports as se-run does; exits as the program did."""
    _pass_signals()
    start = time.monotonic()
    os.write(go_write, b"m" if merge else b"g")
    os.close(go_write)
    os.close(test_in_write)
    # wait4's rusage is the child's and its waited-for descendants', counted from its fork, when
    # the launcher started: the program's own figures (see se-run.c).
    _, status, usage = os.wait4(child, 0)
    code = _report(nonce, merge, status, usage, time.monotonic() - start)
    if LINGER and code != -signal.SIGKILL:
        # Up, idle, until the engine removes the sandbox (see launch's LINGER).
        time.sleep(LINGER)
    os._exit(code if code >= 0 else 128 - code)


# se-run's most for a frame's stdin, or its arguments.
MAX_FRAME_BYTES = 64 << 20
_WAKE = {signal.SIGCHLD, signal.SIGALRM, signal.SIGUSR2}


def _frame():
    """The next test frame as se-run reads it (see launch.test_frame): its stdin, timeout (ms) and
    arguments' bytes; None at EOF before it."""
    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(0, 1)
        if not byte:
            if line:
                _fail("the input ended inside a test frame's header")
            return None
        line += byte
    numbers = line.split(b" ")
    if len(numbers) != 3 or not all(n.strip().isdigit() and len(n.strip()) <= 12 for n in numbers):
        _fail("a test frame's header is not `<stdin bytes> <timeout ms> <args bytes>`")
    stdin_size, timeout_ms, args_size = (int(n) for n in numbers)
    for size, what in ((args_size, "arguments"), (stdin_size, "stdin")):
        if size > MAX_FRAME_BYTES:
            _fail(f"a test's {what} holds more than {MAX_FRAME_BYTES} bytes")
    args = _read_exactly(args_size, short="the input ended inside a test frame")
    if args and not args.endswith(b"\0"):
        _fail("a test's arguments must each end with NUL")
    return _read_exactly(stdin_size, short="the input ended inside a test frame"), timeout_ms, args


def _fail(what: str):
    os.write(2, f"launcher: {what}\n".encode())
    os._exit(125)


def _feed(data: bytes):
    """The test's stdin into its pipe: what the pipe takes now, the rest by a writer of its own (a
    program that never reads cannot block this process); then EOF."""
    os.set_blocking(test_in_write, False)
    done = 0
    try:
        while done < len(data):
            done += os.write(test_in_write, data[done:])
    except BlockingIOError:
        if os.fork() == 0:
            # Killed with the run's other processes at its end, if still writing (_end_the_others).
            os.close(go_write)
            os.set_blocking(test_in_write, True)
            try:
                while done < len(data):
                    done += os.write(test_in_write, data[done:])
            except OSError:
                pass  # the program ended without reading it all: the rest is dropped
            os._exit(0)
    os.close(test_in_write)


def _first_test(merge: bool, nonce: bytes):
    """The first test frame, run by the warm child as se-run runs one (its stdin, arguments,
    timeout and SIGUSR2's abort, the same EXIT mark); returns once reported, or at EOF."""
    frame = _frame()
    if frame is None:
        os.close(go_write)
        os.waitpid(child, 0)
        sys.exit(0)
    stdin, timeout_ms, args = frame
    _pass_signals()
    signal.signal(signal.SIGCHLD, lambda *_: None)
    # Blocked but in sigwait below, as se-run does: none is missed, none interrupts the writes.
    signal.pthread_sigmask(signal.SIG_BLOCK, _WAKE)
    start = time.monotonic()
    _feed(stdin)
    os.write(go_write, (b"u" if merge else b"t") + f"{len(args)}\n".encode() + args)
    os.close(go_write)
    if timeout_ms:
        signal.setitimer(signal.ITIMER_REAL, timeout_ms / 1000)
    flag, killed, aborted, timed_out = "-", False, False, False
    while True:
        # wait4's rusage: the child's since its fork, when it began to wait (see _run_once).
        pid, status, usage = os.wait4(child, os.WNOHANG)
        if pid == child:
            break
        woke = signal.sigwait(_WAKE)
        aborted = aborted or woke == signal.SIGUSR2
        timed_out = timed_out or woke == signal.SIGALRM
        if not killed and (timed_out or aborted):
            os.kill(child, signal.SIGKILL)
            killed, flag = True, "timeout" if timed_out else "abort"
    wall = time.monotonic() - start
    signal.setitimer(signal.ITIMER_REAL, 0)
    # An abort goes to the whole process group: the program may have died of it first.
    if not killed and (aborted or signal.SIGUSR2 in signal.sigpending()):
        flag = "abort"
    _report(nonce, merge, status, usage, wall, flag)
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break
    # A late timer or abort was this test's: ignored, it is dropped, and se-run sets its own.
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _WAKE)


if not child:
    _program()
    sys.exit(0)

header = _read_line().split()
nonce, mode = header[4], header[6].decode()
size, cols, rows, merge, files = (int(number) for number in header[:4] + header[5:6])
with open(source, "wb") as f:
    f.write(_read_exactly(size))
for _ in range(files):
    # The further files, `<bytes> <name>` and their bytes; the server checked the names.
    length, name = _read_line().split(b" ", 1)
    name = name.rstrip(b"\n").decode()
    if name.startswith("/") or ".." in name.split("/"):
        sys.exit(126)
    if os.path.dirname(name):
        os.makedirs(os.path.dirname(name), exist_ok=True)
    with open(name, "wb") as f:
        f.write(_read_exactly(int(length)))
if tty:
    import fcntl
    import struct

    # No job control in a sandbox's terminal: Ctrl-Z is a plain character (see launch.py).
    cooked[6][termios.VSUSP] = b"\0"
    termios.tcsetattr(0, termios.TCSANOW, cooked)
    fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    os.write(1, MARK_STARTED + nonce + b"\n")
if merge:
    # One pipe for both streams, so that the program's writes keep their order.
    os.dup2(1, 2)
if mode == TESTS:
    # The first test in the warm child; a fresh interpreter for each one after it, under se-run.
    _first_test(bool(merge), nonce)
    env = {**os.environ, ENV_NONCE: nonce.decode()}
    os.execve(SE_RUN, [SE_RUN, TESTS, "--", "python3", "-u", source], env)
_run_once(bool(merge), nonce)
