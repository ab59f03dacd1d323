"""Stream framing as pure functions: chunks of bytes in, the program's output in our terms out.

They read what a runtime delivers, however it was cut into chunks, and do no I/O of their own,
so an executor feeds them from its socket and a test from a list.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from . import launch
from .executor import Output, Started, Stream

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
