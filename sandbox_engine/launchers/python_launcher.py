# Runs inside a Python sandbox as `python3 -u -c <this>`: the launcher protocol of
# sandbox_engine.launch, in the interpreter that will run the program, so that a warm sandbox
# skips the interpreter's start-up. Reads stdin with os.read so that no byte of the program's
# own input is taken. ENV_*, MARK_*, SE_RUN and the modes are defined before this code by
# launch.python_launcher; the nonce of the marks comes in the header (see launch).
#
# The program runs in a child forked at once, before the header is read: it never holds the
# nonce, and waits on a pipe for the go. This process, not dumpable, keeps the nonce, waits for
# the child and writes its EXIT mark as se-run does (images/runtime/se-run.c). In TESTS mode each
# test needs a fresh process: the child is let go unused and se-run runs `python3 -u <source>`.
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
import io  # noqa: E402
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
# What exists now is the launcher's, never garbage: out of the collector's sight, so that the
# child's collections (its exit's last one above all) do not touch, and copy, every page it
# inherited. That made the program's exit 2 ms slower, and with it its final state.
gc.freeze()
child = os.fork()
if child:
    os.close(go)
    # From here on no process of the same uid can read this one's memory (the nonce, soon).
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
else:
    os.close(go_write)
    # Until the go, a client's SIGINT ends the waiting child quietly, as it ends the launcher.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _read_exactly(size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.read(0, size - len(data))
        if not chunk:
            sys.exit(0 if not data else 126)
        data += chunk
    return data


def _read_line() -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        line += _read_exactly(1)
    return line


class _WholeWrites(io.RawIOBase):
    """The program's stdout or stderr, each write written whole. python3 -u puts its text layer
    right on the raw file and keeps only what one write(2) took, and under gVisor a write to a
    pipe takes 64 KiB at most: the rest of a longer one was lost."""

    def __init__(self, fd):
        super().__init__()
        self._fd = fd

    def writable(self):
        return True

    def fileno(self):
        return self._fd

    def isatty(self):
        return os.isatty(self._fd)

    def write(self, data):
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            done += os.write(self._fd, view[done:])
        return done


def _whole(stream):
    return io.TextIOWrapper(
        _WholeWrites(stream.fileno()),
        encoding=stream.encoding,
        errors=stream.errors,
        line_buffering=stream.line_buffering,
        write_through=True,
    )


def _main():
    sys.argv = [source]
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
    """The child: waits for the go (which says whether stderr is merged), then is the program."""
    word = os.read(go, 1)
    os.close(go)
    if not word:
        os._exit(0)
    if word == b"m":
        os.dup2(1, 2)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # sys.__stdout__ and sys.__stderr__ keep the originals, which would close the fds if freed.
    sys.stdout, sys.stderr = _whole(sys.stdout), _whole(sys.stderr)
    _main()


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


def _run_once(merge: bool, nonce: bytes):
    """Lets the child go, waits for it, and reports as se-run does; exits as the program did."""
    passed = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGTSTP")
    for name in passed + ("SIGTTIN", "SIGTTOU"):
        # The client's signals go to the whole process group: for the program, not for this one.
        signal.signal(getattr(signal, name), lambda *_: None)
    start = time.monotonic()
    os.write(go_write, b"m" if merge else b"g")
    os.close(go_write)
    # wait4's rusage is the child's and its waited-for descendants', counted from its fork, when
    # the launcher started: the program's own figures (see se-run.c).
    _, status, usage = os.wait4(child, 0)
    wall = time.monotonic() - start
    _end_the_others()
    code = os.waitstatus_to_exitcode(status)
    cpu = round((usage.ru_utime + usage.ru_stime) * 1e6)
    figures = f" {max(code, -1)} {max(-code, 0)} {cpu} {usage.ru_maxrss} {round(wall * 1e6)} -\n"
    os.write(1, MARK_EXIT + nonce + figures.encode())
    if not merge and not tty:
        # stderr, a stream of its own, is complete too (see launch's END).
        os.write(2, MARK_END + nonce + b"\n")
    if LINGER and code != -signal.SIGKILL:
        # Up, idle, until the engine removes the sandbox (see launch's LINGER).
        time.sleep(LINGER)
    os._exit(code if code >= 0 else 128 - code)


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
    # A fresh interpreter per test; the child, unused, ends on the closed pipe.
    os.close(go_write)
    os.waitpid(child, 0)
    env = {**os.environ, ENV_NONCE: nonce.decode()}
    os.execve(SE_RUN, [SE_RUN, TESTS, "--", "python3", "-u", source], env)
_run_once(bool(merge), nonce)
