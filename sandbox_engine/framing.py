"""Stream framing as pure functions: chunks of bytes in, the program's output in our terms out.

They read what a runtime delivers, however it was cut into chunks, and do no I/O of their own,
so an executor feeds them from its socket and a test from a list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator

from . import launch
from .executor import CompileResult, Output, ProgramEnd, Started, StderrEnd, Stream, Usage

_STREAMS = {1: Stream.STDOUT, 2: Stream.STDERR}
HEADER = 8


def demultiplex(chunks: Iterable[bytes]) -> Iterator[tuple[Stream, bytes]]:
    """Docker's attach framing without a tty: an 8-byte header (stream, 0, 0, 0, size:u32be),
    then that many bytes. Frames of stdin's echo (0) or unknown streams are dropped; a frame cut
    short by the end of the stream is too (its program is gone)."""
    buffer = bytearray()
    for data in chunks:
        buffer += data
        while len(buffer) >= HEADER:
            size = int.from_bytes(buffer[4:HEADER], "big")
            if len(buffer) < HEADER + size:
                break
            stream = _STREAMS.get(buffer[0])
            payload = bytes(buffer[HEADER : HEADER + size])
            del buffer[: HEADER + size]
            if stream is not None and payload:
                yield stream, payload


def take_marks(items: Iterable[tuple[Stream, bytes]], nonce: str, expected: int) -> Iterator[Output]:
    """Output with the launcher's STARTED marks of this nonce turned into Started, in order.
    `expected` is how many the launcher writes (launch.marks_expected).

    Until the last mark is seen, stdout bytes that could begin one are held back, and everything
    else goes on at once; after it, output passes untouched, marks and look-alikes included: the
    launcher writes its last mark before any code of the user's runs, and anything later may be
    that code's (see launch).
    """
    if not expected:
        yield from items
        return
    mark = launch.mark_pattern(nonce)
    pending = b""
    for stream, data in items:
        if not expected or stream is not Stream.STDOUT:
            yield stream, data
            continue
        pending += data
        while expected and (found := mark.search(pending)):
            if found.start():
                yield Stream.STDOUT, pending[: found.start()]
            yield Started()
            pending = pending[found.end() :]
            expected -= 1
        cut = pending.rfind(launch.MARK_START[:1]) if expected else -1
        if cut < 0 or len(pending) - cut > launch.MARK_MAX:
            cut = len(pending)
        if cut:
            yield Stream.STDOUT, pending[:cut]
            pending = pending[cut:]
    if pending:
        yield Stream.STDOUT, pending


# An EXIT mark's line is short: a \x1e further back than this begins none.
END_MARK_MAX = 160


def take_ends(items: Iterable[Output], nonce: str, stderr_ends: bool = False) -> Iterator[Output]:
    """Output with the launcher's EXIT marks of this nonce (on stdout) turned into ProgramEnd
    and, with `stderr_ends`, its END marks (on stderr) into StderrEnd, in order.

    Unlike the STARTED mark these come after the user's code has run, anywhere in its output and
    any number of times (once per test): the nonce, which that code cannot learn, is what makes
    them the launcher's (see launch). A stream's bytes that could begin a mark are held back
    until the mark is whole or cannot be one; all else goes on at once.
    """
    exits = _Marks(launch.mark(launch.EXIT, nonce)[:-1] + b" ", _EXIT_FIELDS)
    ends = _Marks(launch.mark(launch.END, nonce)[:-1], rb"\r?\n") if stderr_ends else None
    for item in items:
        if not isinstance(item, tuple):
            yield item
            continue
        stream, data = item
        marks = exits if stream is Stream.STDOUT else ends
        if marks is None:
            yield item
            continue
        for piece in marks.feed(data):
            yield (stream, piece) if isinstance(piece, bytes) else piece
    for stream, marks in ((Stream.STDOUT, exits), (Stream.STDERR, ends)):
        if marks is not None and marks.pending:
            yield stream, marks.pending


def compile_stage(items: Iterator[Output], nonce: str, stream: Stream = Stream.STDERR) -> Iterator[Output]:
    """A compile stage's output, from its own connection or relayed by the launcher (a compile
    stage started ahead, see launch.compile_waiter; then on either stream: merged, the
    launcher's stderr is its stdout): as `stream`, until its se-run's EXIT mark of this nonce,
    which says how it ended (the compiler cannot forge it: see launch). Nothing past the mark is
    taken from `items`, which go on after (a process the compiler left holding its output does not
    hold the program back: the program's se-run kills it)."""

    def all_as_stdout() -> Iterator[tuple[Stream, bytes]]:
        for item in items:
            if isinstance(item, tuple):
                yield Stream.STDOUT, item[1]

    for item in take_ends(all_as_stdout(), nonce):
        if isinstance(item, ProgramEnd):
            code = item.exit_code if item.exit_code is not None else 128 + item.signal
            yield CompileResult(code, item.usage)
            return
        if isinstance(item, tuple):
            yield stream, item[1]
    # The sandbox ended first (the compile timeout's kill, or the launcher's end): as a compile
    # stage's process killed with it.
    yield CompileResult(137)


def single_run(
    items: Iterable[Output], one_stream: bool, settle: Callable[[], None] | None = None
) -> Iterator[Output]:
    """A single run's output (take_ends' with its END marks), complete at its marks rather than
    when the runtime closes the stream (after the sandbox stops, tens of milliseconds later, or
    never while the launcher lingers: see launch's LINGER). One stream is complete at the EXIT
    mark; a separate stderr also at its END mark, which may come first (the runtime copies the
    two streams apart). se-run writes no END for a single run: after its EXIT mark `settle` (if
    given) is called and the output goes on to the stream's end."""
    stderr_complete = program_ended = False
    for item in items:
        if isinstance(item, StderrEnd):
            stderr_complete = True
            if program_ended:
                return
            continue
        yield item
        if isinstance(item, ProgramEnd):
            if one_stream or stderr_complete:
                return
            program_ended = True
            if settle is not None:
                settle()


_EXIT_FIELDS = rb"(-?\d+) (\d+) (\d+) (\d+) (\d+) (\S+)\r?\n"


class _Marks:
    """One stream's marks of one kind: a fixed prefix (with the nonce), then fields to a newline."""

    def __init__(self, prefix: bytes, fields: bytes) -> None:
        self.prefix = prefix
        self.pattern = re.compile(re.escape(prefix) + fields)
        self.pending = b""

    def feed(self, data: bytes) -> Iterator[bytes | ProgramEnd | StderrEnd]:
        pending = self.pending + data
        while found := self.pattern.search(pending):
            if found.start():
                yield pending[: found.start()]
            yield _end(found)
            pending = pending[found.end() :]
        cut = self._cut(pending)
        if cut:
            yield pending[:cut]
        self.pending = pending[cut:]

    def _cut(self, pending: bytes) -> int:
        """Where the bytes that may still become a mark begin (the length: none may)."""
        start = pending.rfind(self.prefix[:1])
        if start < 0 or len(pending) - start > END_MARK_MAX:
            return len(pending)
        tail = pending[start:]
        if self.prefix.startswith(tail) or (tail.startswith(self.prefix) and b"\n" not in tail):
            return start
        return len(pending)


def _end(found: re.Match[bytes]) -> ProgramEnd | StderrEnd:
    if not found.groups():
        return StderrEnd()
    code, signal, cpu_us, rss_kib, wall_us, flag = found.groups()
    exit_code = int(code)
    return ProgramEnd(
        exit_code=exit_code if exit_code >= 0 else None,
        signal=int(signal),
        usage=Usage(
            cpu_time_ms=int(cpu_us) / 1000,
            wall_time_ms=int(wall_us) / 1000,
            memory_peak_bytes=int(rss_kib) * 1024,
        ),
        timed_out=flag == b"timeout",
        aborted=flag == b"abort",
    )
