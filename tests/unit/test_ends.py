"""The launcher's EXIT and END marks, however the stream is cut, and what cannot forge them."""

from __future__ import annotations

import pytest

from sandbox_engine import framing, launch
from sandbox_engine.executor import ProgramEnd, StderrEnd, Stream, Usage

NONCE = "0123456789abcdef"
EXIT = launch.mark(launch.EXIT, NONCE)[:-1] + b" 3 0 1500 2048 250000 -\n"
END = launch.mark(launch.END, NONCE)


def parse(items, stderr_ends=False):
    out, ends = {Stream.STDOUT: b"", Stream.STDERR: b""}, []
    events = []
    for item in framing.take_ends(items, NONCE, stderr_ends):
        if isinstance(item, tuple):
            out[item[0]] += item[1]
            events.append(item[0])
        else:
            ends.append(item)
            events.append(item)
    return out, ends, events


def test_an_exit_mark_becomes_the_programs_end_with_its_usage():
    out, ends, _ = parse([(Stream.STDOUT, b"hello\n" + EXIT)])
    assert out[Stream.STDOUT] == b"hello\n"
    assert ends == [ProgramEnd(3, 0, Usage(1.5, 250.0, 2048 * 1024))]


@pytest.mark.parametrize("size", [1, 2, 5, 17])
def test_a_mark_cut_anywhere_is_found_and_output_around_it_is_whole(size):
    stream = b"abc\x1e\x1eSANDBOX-EXIT wrong 1 2 3 4 5 -\n" + b"x" * 3 + EXIT + b"after"
    chunks = [(Stream.STDOUT, stream[i : i + size]) for i in range(0, len(stream), size)]
    out, ends, _ = parse(chunks)
    assert out[Stream.STDOUT] == b"abc\x1e\x1eSANDBOX-EXIT wrong 1 2 3 4 5 -\nxxxafter"
    assert len(ends) == 1


def test_signals_timeouts_aborts_and_a_ttys_line_ends():
    mark = launch.mark(launch.EXIT, NONCE)[:-1]
    out, ends, _ = parse(
        [
            (Stream.STDOUT, mark + b" -1 9 10 20 30 timeout\r\n"),
            (Stream.STDOUT, mark + b" -1 15 10 20 30 abort\n"),
        ]
    )
    assert out[Stream.STDOUT] == b""
    assert [(e.exit_code, e.signal, e.timed_out, e.aborted) for e in ends] == [
        (None, 9, True, False),
        (None, 15, False, True),
    ]


def test_end_marks_on_stderr_only_when_asked_for_and_in_order():
    items = [(Stream.STDERR, b"warn\n" + END), (Stream.STDOUT, EXIT), (Stream.STDERR, b"next")]
    out, ends, events = parse(items, stderr_ends=True)
    assert out[Stream.STDERR] == b"warn\nnext"
    assert events == [
        Stream.STDERR,
        StderrEnd(),
        ProgramEnd(3, 0, Usage(1.5, 250.0, 2048 * 1024)),
        Stream.STDERR,
    ]
    out, ends, _ = parse(items)
    assert out[Stream.STDERR] == b"warn\n" + END + b"next"


def test_output_that_merely_contains_the_separator_is_not_held_back():
    chunks = [(Stream.STDOUT, b"\x1e" + b"z" * 200), (Stream.STDOUT, b"\x1eQ")]
    seen = []
    for item in framing.take_ends(iter(chunks), NONCE):
        seen.append(item)
    assert seen[0] == (Stream.STDOUT, b"\x1e" + b"z" * 200)
    assert seen[1] == (Stream.STDOUT, b"\x1eQ")


def test_a_partial_mark_left_at_the_end_is_output():
    out, ends, _ = parse([(Stream.STDOUT, b"x\x1eSANDBOX-EX")])
    assert out[Stream.STDOUT] == b"x\x1eSANDBOX-EX" and not ends
