"""The launcher protocol and the stream framing, as pure functions: bytes in, our terms out."""

from __future__ import annotations

import pytest

from sandbox_engine import framing, launch
from sandbox_engine.docker_warm import compiles_ahead
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


def spec(language: str = "c", tty: bool = False, session_id: str | None = "s") -> SandboxSpec:
    lang = LANGUAGES[language]
    limits = None
    return SandboxSpec(
        session_id=session_id,
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


def test_the_header_carries_the_code_size_terminal_merge_nonce_files_and_mode():
    assert launch.header("é".encode(), None, NONCE) == f"2 80 24 0 {NONCE} 0 once\n".encode() + "é".encode()
    assert launch.header(b"x", Terminal(120, 40), NONCE, True) == f"1 120 40 1 {NONCE} 0 once\nx".encode()
    files = [("lib/a.py", b"A"), ("b", b"")]
    assert launch.header(b"x", None, NONCE, files=files, tests=True) == (
        f"1 80 24 0 {NONCE} 2 tests\nx".encode() + b"1 lib/a.py\nA" + b"0 b\n"
    )


def test_a_test_frame_carries_its_stdin_timeout_and_arguments():
    assert launch.test_frame(b"in", 1500, ["a", "b c"]) == b"2 1500 6\na\0b c\0in"
    assert launch.test_frame(b"", 0) == b"0 0 0\n"


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
    # A warm pool's sandbox (no session yet): the interpreter started before the code comes.
    command = launch.command(spec("python", session_id=None))
    assert command[:3] == ["python3", "-u", "-c"]
    source = command[3]
    assert f"ENV_SOURCE = {launch.ENV_SOURCE!r}" in source
    assert f"SE_RUN = {launch.SE_RUN!r}" in source
    compile(source, "launcher", "exec")


@pytest.mark.parametrize("language", ["python", "javascript", "ruby", "php"])
def test_a_cold_sandbox_runs_the_languages_plain_command_under_the_sh_launcher(language):
    # Made for its session, the interpreter starts when the code comes either way: its plain
    # command (`python3 -u main.py`) under se-run starts sooner than a launcher's waiting child.
    run = list(LANGUAGES[language].run)
    command = launch.command(spec(language))
    assert command[0] == "/bin/sh" and command[-len(run) :] == run
    assert not launch.ends_stderr(command)
    # A warm pool's sandbox has the language's own launcher.
    assert launch.ends_stderr(launch.command(spec(language, session_id=None)))


def test_only_a_warm_terminal_sandbox_asks_its_terminals_name_for_a_compile_stage_ahead():
    # One made for its session has its compile stage exec'd when the code comes: no name wanted.
    def asks(session_id: str | None) -> bool:
        return "terminal=$(tty)" in launch.command(spec("c", session_id=session_id, tty=True))[2]

    assert asks(None) and not asks("s")


def test_the_sh_launcher_neither_runs_the_compiler_nor_exports_the_nonce():
    script = launch.command(spec("c"))[2]
    assert "gcc" not in script
    # The nonce goes into se-run's environment alone, as it replaces the shell (see se-run.c).
    [handed] = [line for line in script.splitlines() if "$nonce" in line and "exec" in line]
    assert handed.startswith(f"{launch.ENV_NONCE}=$nonce exec {launch.SE_RUN} ")
    assert "export" not in script


def test_a_single_run_is_complete_at_its_marks_whichever_comes_first():
    from sandbox_engine.executor import ProgramEnd, StderrEnd, Stream

    out, err = (Stream.STDOUT, b"o"), (Stream.STDERR, b"e")
    settled: list[bool] = []

    def run(items, one_stream=False):
        return list(framing.single_run(iter(items), one_stream, lambda: settled.append(True)))

    line = launch.mark(launch.EXIT, "n")[:-1] + b" 0 0 1 2 3 -\n"
    [exit_mark] = framing.take_ends([(Stream.STDOUT, line)], "n")
    assert isinstance(exit_mark, ProgramEnd)
    after = (Stream.STDOUT, b"never read")
    # stderr's END before the EXIT mark: complete at the EXIT mark, nothing to settle.
    assert run([err, StderrEnd(), out, exit_mark, after]) == [err, out, exit_mark] and settled == []
    # One stream: complete at the EXIT mark.
    assert run([out, exit_mark, after], one_stream=True) == [out, exit_mark] and settled == []
    # END after the EXIT mark: settling meanwhile (a quiet stream would end it), complete at END.
    assert run([out, exit_mark, err, StderrEnd(), after]) == [out, exit_mark, err] and settled == [True]
    # No END (se-run): settled, then read to the stream's end.
    assert run([out, exit_mark, err]) == [out, exit_mark, err] and settled == [True, True]


# --- a compile stage started ahead (launch.compile_waiter), relayed by the launcher -------------

COMPILE_NONCE = "fedcba9876543210"


def compile_mark(code: int, signal: int = 0) -> bytes:
    return launch.mark(launch.EXIT, COMPILE_NONCE)[:-1] + f" {code} {signal} 10 20 30 -\n".encode()


@pytest.mark.parametrize("size", [1, 5, 1000])
@pytest.mark.parametrize("stream", [OUT, ERR], ids=["merged", "stderr"])
def test_a_relayed_compile_stage_is_stderr_until_its_mark_and_the_rest_goes_on(size, stream):
    from sandbox_engine.executor import CompileResult

    relayed = b"main.c:1: warning\n" + compile_mark(1)
    items = iter([*((stream, piece) for piece in cut(relayed, size)), (OUT, b"program")])
    stage = list(framing.compile_stage(items, COMPILE_NONCE))
    assert b"".join(data for _, data in stage[:-1]) == b"main.c:1: warning\n"
    assert {s for s, _ in stage[:-1]} == {ERR}
    result = stage[-1]
    assert isinstance(result, CompileResult) and result.exit_code == 1 and result.usage.cpu_time_ms == 0.01
    # Nothing past the mark is taken: the program's output is the caller's.
    assert list(items) == [(OUT, b"program")]


def test_a_relayed_compile_stage_killed_by_a_signal_or_cut_short_says_so():
    from sandbox_engine.executor import CompileResult

    [result] = framing.compile_stage(iter([(ERR, compile_mark(-1, 9))]), COMPILE_NONCE)
    assert result == CompileResult(137, result.usage)
    # A mark of another nonce (the launcher's, or forged) is output; the stream's end, a kill.
    forged = launch.mark(launch.EXIT, NONCE)[:-1] + b" 0 0 1 2 3 -\n"
    *output, result = framing.compile_stage(iter([(ERR, forged)]), COMPILE_NONCE)
    assert b"".join(data for _, data in output) == forged and result == CompileResult(137)


def test_a_compile_stage_started_ahead_is_relayed_or_told_the_terminal():
    for language in ("c", "typescript"):
        # The sh launcher's, and the fork launcher's (TypeScript's: its warm compiler's client).
        assert compiles_ahead(spec(language), gvisor=False)
        assert launch.COMPILE_OUT in launch.command(spec(language))[2]
        # On a terminal, the launcher tells the compile stage its name instead.
        assert compiles_ahead(spec(language, tty=True), gvisor=False)
        assert launch.COMPILE_TTY in launch.command(spec(language, tty=True))[2]
    assert not compiles_ahead(spec("python"), gvisor=False)
    # Under gVisor, not on a terminal: the sandbox's is the host's, which nothing inside can name.
    assert compiles_ahead(spec("c"), gvisor=True) and compiles_ahead(spec("c", tty=True), gvisor=False)
    assert not compiles_ahead(spec("c", tty=True), gvisor=True)
    # The waiter runs the compile stage as compile_command does, its output into the FIFO, or
    # into the terminal named in the other.
    script = launch.compile_waiter(("gcc", "main.c"))
    assert script[-2:] == ["gcc", "main.c"] and f">{launch.COMPILE_OUT} 2>&1" in script[2]
    script = launch.compile_waiter(("gcc", "main.c"), tty=True)
    assert script[-2:] == ["gcc", "main.c"] and f"< {launch.COMPILE_TTY}" in script[2]
    assert '>"$terminal" 2>&1' in script[2]
