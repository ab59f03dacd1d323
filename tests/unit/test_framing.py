"""The launcher protocol and the stream framing, as pure functions: bytes in, our terms out."""

from __future__ import annotations

import subprocess

import pytest

from sandbox_engine import framing, launch
from sandbox_engine.executor import SandboxSpec, Started, Stream, Terminal
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
def test_a_started_mark_is_taken_out_in_order_however_it_is_cut(size):
    stdout = b"before\n" + launch.mark(launch.STARTED, NONCE) + b"Hello\n"
    items = [(OUT, chunk) for chunk in cut(stdout, size)]
    assert marks(items, 1) == [(OUT, b"before\n"), Started(), (OUT, b"Hello\n")]


def test_a_tty_mark_with_a_carriage_return():
    stdout = launch.mark(launch.STARTED, NONCE).replace(b"\n", b"\r\n")
    assert marks([(OUT, stdout), (OUT, b"hi")], 1) == [Started(), (OUT, b"hi")]


def test_marks_of_another_nonce_or_kind_are_output():
    forged = (
        launch.mark(launch.STARTED, "f" * 16)
        + launch.mark(launch.STARTED)
        # What the launcher once wrote at the compile stage's end, with and without its code.
        + b"\x1eSANDBOX-COMPILED "
        + NONCE.encode()
        + b" 0\n"
        + b"\x1eSANDBOX-COMPILED "
        + NONCE.encode()
        + b"\n"
    )
    assert marks([(OUT, forged)], 1) == [(OUT, forged)]


def test_after_the_last_mark_output_passes_untouched():
    """Marks written after the launcher's last one are the user's code's: output, not marks."""
    again = launch.mark(launch.STARTED, NONCE)
    assert marks([(OUT, again + b"x"), (OUT, again)], 1) == [Started(), (OUT, b"x" + again)]


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


def test_the_header_carries_the_code_size_terminal_merge_and_nonce():
    assert launch.header("é".encode(), None, NONCE) == f"2 80 24 0 {NONCE}\n".encode() + "é".encode()
    assert launch.header(b"x", Terminal(120, 40), NONCE, True) == f"1 120 40 1 {NONCE}\nx".encode()


def test_every_nonce_is_new():
    assert len({launch.new_nonce() for _ in range(100)}) == 100


@pytest.mark.parametrize(
    ("tty", "compiles", "expected"), [(False, False, 0), (True, False, 1), (False, True, 1), (True, True, 1)]
)
def test_one_mark_is_expected_when_a_terminal_or_a_compile_stage_waits_for_it(tty, compiles, expected):
    assert launch.marks_expected(tty, compiles) == expected


def test_the_environment_hands_the_launcher_its_facts_and_no_secret():
    env = launch.environment(spec("python", tty=True))
    assert env[launch.ENV_SOURCE] == "main.py"
    assert env["TERM"] == "xterm-256color"
    assert env["PYTHONUNBUFFERED"] == "1"
    # Any process of the sandbox reads PID 1's environment (/proc/1/environ).
    assert not any("NONCE" in name for name in env)


def test_the_python_launcher_gets_the_protocol_constants():
    command = launch.command(spec("python"))
    assert command[:3] == ["python3", "-u", "-c"]
    source = command[3]
    assert f"ENV_SOURCE = {launch.ENV_SOURCE!r}" in source
    assert "NONCE" not in source
    compile(source, "launcher", "exec")


def test_the_python_launcher_takes_the_header_then_runs_the_program(tmp_path):
    env = {"PATH": "/usr/bin:/bin", launch.ENV_SOURCE: str(tmp_path / "main.py")}
    code = b"import os\nprint('ran', input(), sorted(k for k in os.environ if k.startswith('SANDBOX')))"
    stdin = launch.header(code, None, NONCE) + b"input\n"
    done = subprocess.run(
        launch.command(spec("python")), input=stdin, capture_output=True, cwd=tmp_path, env=env, timeout=10
    )
    assert done.stdout == b"ran input []\n", done.stderr


# The program the sh launcher runs in these tests: its own source, then its input.
PROGRAM = ("sh", "-c", 'echo "ran $(cat prog.sh)"; cat')


def sh_launcher_env(tmp_path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", launch.ENV_SOURCE: str(tmp_path / "prog.sh")}


def run_sh_launcher(stdin: bytes, compiles: bool, tmp_path) -> subprocess.CompletedProcess:
    """The sh launcher, run here by a real sh: the protocol end to end without a container."""
    argv = launch.sh_launcher(PROGRAM, compiles)
    return subprocess.run(
        argv, input=stdin, capture_output=True, cwd=tmp_path, env=sh_launcher_env(tmp_path), timeout=10
    )


def test_the_sh_launcher_takes_the_code_then_leaves_the_input_to_the_program(tmp_path):
    done = run_sh_launcher(launch.header(b"CODE", None, NONCE) + b"input\n", False, tmp_path)
    assert done.stdout == b"ran CODE\ninput\n"
    assert (tmp_path / "prog.sh").read_bytes() == b"CODE"


def test_with_a_compile_stage_the_sh_launcher_marks_the_source_in_place_and_waits_for_the_go(tmp_path):
    launcher = subprocess.Popen(
        launch.sh_launcher(PROGRAM, compiles=True),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=tmp_path,
        env=sh_launcher_env(tmp_path),
    )
    try:
        launcher.stdin.write(launch.header(b"CODE", None, NONCE))
        launcher.stdin.flush()
        started = launch.mark(launch.STARTED, NONCE)
        assert launcher.stdout.read(len(started)) == started
        # The compile stage's turn: the source is there, and nothing runs until the go.
        assert (tmp_path / "prog.sh").read_bytes() == b"CODE"
        with pytest.raises(subprocess.TimeoutExpired):
            launcher.wait(0.3)
        launcher.stdin.write(launch.GO + b"input\n")
        launcher.stdin.close()
        assert launcher.stdout.read() == b"ran CODE\ninput\n"
        assert launcher.wait(10) == 0
    finally:
        launcher.kill()
        launcher.wait()


def test_after_a_failed_compile_the_sh_launcher_ends_with_its_code_and_runs_nothing(tmp_path):
    done = run_sh_launcher(launch.header(b"CODE", None, NONCE) + launch.halt(3) + b"input\n", True, tmp_path)
    assert list(framing.take_marks([(OUT, done.stdout)], NONCE, 1)) == [Started()]
    assert done.returncode == 3


def test_without_a_go_the_sh_launcher_runs_nothing(tmp_path):
    done = run_sh_launcher(launch.header(b"CODE", None, NONCE), True, tmp_path)
    assert list(framing.take_marks([(OUT, done.stdout)], NONCE, 1)) == [Started()]
    assert done.returncode == 0


def test_the_sh_launcher_neither_runs_the_compiler_nor_keeps_the_nonce():
    script = launch.command(spec("c"))[2]
    assert "gcc" not in script
    [unset] = [line.split() for line in script.splitlines() if line.startswith("unset ")]
    assert "nonce" in unset


def test_the_compile_stage_writes_stderr_reads_nothing_and_keeps_its_files_private(tmp_path):
    command = launch.compile_command(("sh", "-c", "echo out; echo err >&2; cat; umask"))
    done = subprocess.run(command, input=b"stdin", capture_output=True, cwd=tmp_path, timeout=10)
    assert (done.stdout, done.stderr, done.returncode) == (b"", b"out\nerr\n0077\n", 0)


def test_the_sh_launcher_merges_stderr_into_stdout_when_asked(tmp_path):
    argv = launch.sh_launcher(("sh", "-c", "echo one; echo two >&2; echo three"))
    env = {"PATH": "/usr/bin:/bin", launch.ENV_SOURCE: str(tmp_path / "prog.sh")}
    for merge, stdout, stderr in ((True, b"one\ntwo\nthree\n", b""), (False, b"one\nthree\n", b"two\n")):
        stdin = launch.header(b"", None, NONCE, merge)
        done = subprocess.run(argv, input=stdin, capture_output=True, cwd=tmp_path, env=env, timeout=10)
        assert (done.stdout, done.stderr) == (stdout, stderr)
