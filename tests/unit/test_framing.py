"""The launcher protocol and the stream framing, as pure functions: bytes in, our terms out."""

from __future__ import annotations

import subprocess

import pytest

from sandbox_engine import framing, launch
from sandbox_engine.executor import CompileResult, SandboxSpec, Started, Stream, Terminal
from sandbox_engine.languages import LANGUAGES

NONCE = "0123456789abcdef"
OUT, ERR = Stream.STDOUT, Stream.STDERR


def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def cut(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# --- Docker's framing -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 3, 8, 9, 1000])
def test_frames_come_out_whole_however_the_stream_is_cut(size):
    wire = frame(1, b"hello ") + frame(2, b"oops\n") + frame(1, "wörld\n".encode())
    assert list(framing.demultiplex(cut(wire, size))) == [
        (OUT, b"hello "),
        (ERR, b"oops\n"),
        (OUT, "wörld\n".encode()),
    ]


def test_empty_unknown_and_cut_short_frames_are_dropped():
    wire = (
        frame(1, b"") + frame(0, b"stdin echo") + frame(3, b"?") + frame(1, b"kept") + frame(2, b"half")[:-2]
    )
    assert list(framing.demultiplex([wire])) == [(OUT, b"kept")]


def test_a_large_frame_is_one_item():
    payload = bytes(range(256)) * 1024
    assert list(framing.demultiplex(cut(frame(1, payload), 4096))) == [(OUT, payload)]


# --- the launcher's marks ---------------------------------------------------------------------


def marks(items, expected: int) -> list:
    """take_marks' output with adjacent stdout chunks joined, as a client would read them."""
    out: list = []
    for item in framing.take_marks(items, NONCE, expected):
        if isinstance(item, tuple) and out and isinstance(out[-1], tuple) and out[-1][0] == item[0]:
            out[-1] = (item[0], out[-1][1] + item[1])
        else:
            out.append(item)
    return out


@pytest.mark.parametrize("size", [1, 2, 5, 64])
def test_a_compile_mark_is_taken_out_in_order_however_it_is_cut(size):
    stdout = b"warning\n" + launch.mark(launch.COMPILED, NONCE, 0) + b"Hello\n"
    items = [(OUT, chunk) for chunk in cut(stdout, size)]
    assert marks(items, 1) == [(OUT, b"warning\n"), CompileResult(0), (OUT, b"Hello\n")]


def test_a_failed_compile_reports_its_exit_code():
    items = [(ERR, b"main.c:1: error\n"), (OUT, launch.mark(launch.COMPILED, NONCE, 1))]
    assert marks(items, 1) == [(ERR, b"main.c:1: error\n"), CompileResult(1)]


def test_a_tty_mark_with_a_carriage_return_and_then_a_compile_mark():
    stdout = launch.mark(launch.STARTED, NONCE).replace(b"\n", b"\r\n") + launch.mark(
        launch.COMPILED, NONCE, 0
    )
    assert marks([(OUT, stdout), (OUT, b"hi")], 2) == [Started(), CompileResult(0), (OUT, b"hi")]


def test_marks_of_another_nonce_or_without_an_exit_code_are_output():
    forged = launch.mark(launch.COMPILED, "f" * 16, 0) + b"\x1eSANDBOX-COMPILED " + NONCE.encode() + b"\n"
    assert marks([(OUT, forged)], 1) == [(OUT, forged)]


def test_after_the_last_mark_output_passes_untouched():
    again = launch.mark(launch.COMPILED, NONCE, 0)
    assert marks([(OUT, again + b"x"), (OUT, again)], 1) == [CompileResult(0), (OUT, b"x" + again)]


def test_output_that_cannot_begin_a_mark_is_not_held_back():
    items = iter([(OUT, b"prompt> "), (OUT, b"\x1e" + b"x" * 100)])
    got = framing.take_marks(items, NONCE, 1)
    # The prompt leaves at once, before the next chunk is even read.
    assert next(got) == (OUT, b"prompt> ")
    assert b"".join(data for _, data in got) == b"\x1e" + b"x" * 100


def test_without_marks_expected_the_items_pass_as_they_are():
    items = [(OUT, launch.mark(launch.STARTED, NONCE)), (ERR, b"e")]
    assert list(framing.take_marks(items, NONCE, 0)) == items


# --- the launchers ----------------------------------------------------------------------------


def spec(language: str = "c", tty: bool = False) -> SandboxSpec:
    lang = LANGUAGES[language]
    limits = None
    return SandboxSpec(
        session_id="s",
        language=lang.id,
        image=lang.image,
        source_file=lang.source_file,
        command=lang.run,
        env=dict(lang.env),
        limits=limits,  # type: ignore[arg-type]
        compile=lang.compile,
        tty=tty,
        launcher=lang.launcher,
    )


def test_the_header_carries_the_code_size_and_terminal():
    assert launch.header("é".encode(), None) == b"2 80 24\n" + "é".encode()
    assert launch.header(b"x", Terminal(120, 40)) == b"1 120 40\nx"


def test_the_environment_hands_the_launcher_its_facts():
    env = launch.environment(spec("python", tty=True), NONCE)
    assert env[launch.ENV_NONCE] == NONCE
    assert env[launch.ENV_SOURCE] == "main.py"
    assert env["TERM"] == "xterm-256color"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_the_python_launcher_gets_the_protocol_constants():
    command = launch.command(spec("python"))
    assert command[:3] == ["python3", "-u", "-c"]
    source = command[3]
    assert f"ENV_NONCE = {launch.ENV_NONCE!r}" in source
    compile(source, "launcher", "exec")


def run_sh_launcher(
    stdin: bytes, compile_cmd: tuple[str, ...] | None, tmp_path
) -> subprocess.CompletedProcess:
    """The sh launcher, run here by a real sh: the protocol end to end without a container."""
    argv = launch.sh_launcher(("sh", "-c", 'echo "ran $(cat prog.sh)"; cat'), compile_cmd)
    env = {"PATH": "/usr/bin:/bin", launch.ENV_NONCE: NONCE, launch.ENV_SOURCE: str(tmp_path / "prog.sh")}
    return subprocess.run(argv, input=stdin, capture_output=True, cwd=tmp_path, env=env, timeout=10)


def test_the_sh_launcher_takes_the_code_then_leaves_the_input_to_the_program(tmp_path):
    done = run_sh_launcher(launch.header(b"CODE", None) + b"input\n", None, tmp_path)
    assert done.stdout == b"ran CODE\ninput\n"
    assert (tmp_path / "prog.sh").read_bytes() == b"CODE"


def test_the_sh_launchers_compile_mark_is_what_the_parser_takes(tmp_path):
    stdin = launch.header(b"CODE", None) + launch.GO + b"input\n"
    done = run_sh_launcher(stdin, ("sh", "-c", "echo compiling; exit 0"), tmp_path)
    items = list(framing.take_marks([(OUT, done.stdout)], NONCE, 1))
    assert items == [CompileResult(0), (OUT, b"ran CODE\ninput\n")]
    assert done.stderr == b"compiling\n"


def test_a_failed_compile_stops_the_sh_launcher_with_its_code(tmp_path):
    done = run_sh_launcher(launch.header(b"CODE", None), ("sh", "-c", "exit 3"), tmp_path)
    assert list(framing.take_marks([(OUT, done.stdout)], NONCE, 1)) == [CompileResult(3)]
    assert done.returncode == 3
