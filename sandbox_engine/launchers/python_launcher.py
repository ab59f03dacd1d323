# Runs inside a Python sandbox as `python3 -u -c <this>`: the launcher protocol of
# sandbox_engine.launch, in the interpreter that will run the program, so that a warm sandbox
# skips the interpreter's start-up. Reads stdin with os.read so that no byte of the program's
# own input is taken. ENV_* and MARK_* are defined before this code by launch.python_launcher;
# the nonce of the STARTED mark comes in the header (see launch).
# ruff: noqa: F821
import io
import os
import runpy  # imported before the program arrives: they cost milliseconds once it has
import signal
import sys
import traceback

source = os.path.abspath(os.environ.pop(ENV_SOURCE, "main.py"))
os.environ.pop(ENV_KILL_GROUP, None)
tty = os.isatty(0)
if tty:
    import termios

    cooked = termios.tcgetattr(0)
    raw = termios.tcgetattr(0)
    raw[0] = 0  # iflag: no CR/NL translation, no flow control
    raw[1] &= ~termios.OPOST
    raw[3] &= ~(termios.ECHO | termios.ICANON | termios.ISIG | termios.IEXTEN)
    termios.tcsetattr(0, termios.TCSANOW, raw)
    os.write(1, MARK_READY)


def _read_exactly(size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.read(0, size - len(data))
        if not chunk:
            sys.exit(0 if not data else 126)
        data += chunk
    return data


header = b""
while not header.endswith(b"\n"):
    header += _read_exactly(1)
*numbers, nonce = header.split()
size, cols, rows, merge = (int(number) for number in numbers)
os.umask(0o077)
with open(source, "wb") as f:
    f.write(_read_exactly(size))
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
del nonce, numbers, header, size, cols, rows, tty, merge


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


# sys.__stdout__ and sys.__stderr__ keep the originals, which would close the descriptors if freed.
sys.stdout, sys.stderr = _whole(sys.stdout), _whole(sys.stderr)


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


_main()
