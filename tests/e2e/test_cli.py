"""`sandbox-engine run` against the real server: pipes, a real pseudo-terminal, and refusals."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import subprocess
import sys
import termios
import time

import pytest
from harness import SLEEP_UNTIL_SIGNAL, VENV_BIN

# Every test here runs a real server on the real Docker daemon.
pytestmark = [pytest.mark.docker, pytest.mark.slow]

CLI = os.path.join(VENV_BIN, "sandbox-engine")
GREET = 'import sys\nname = input("Enter your name: ")\nprint("Hello", name)\nsys.exit(3)\n'
# The greeting is inside the try: a Ctrl-C sent once "Hello Ada" shows may land before print
# has returned (its newline is a write of its own), above all on a loaded machine under gVisor.
INTERRUPTIBLE = (
    "import time\n"
    "name = input('Enter your name: ')\n"
    "try:\n"
    "    print('Hello', name)\n"
    "    print('waiting')\n"
    f"    {SLEEP_UNTIL_SIGNAL}\n"
    "except KeyboardInterrupt:\n"
    "    print('interrupted')\n"
    "    raise\n"
)


def write(tmp_path, name: str, code: str) -> str:
    path = tmp_path / name
    path.write_text(code)
    return str(path)


def test_piped_stdin_and_the_exit_code_passed_through(server, tmp_path):
    result = subprocess.run(
        [CLI, "run", "--server", server.url, write(tmp_path, "greet.py", GREET)],
        input="Ada\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout == "Enter your name: Hello Ada\n"
    assert result.returncode == 3


def test_stderr_goes_to_stderr(server, tmp_path):
    code = "import sys\nprint('out')\nprint('err', file=sys.stderr)"
    result = subprocess.run(
        [CLI, "run", "--server", server.url, write(tmp_path, "both.py", code)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.stdout, result.stderr, result.returncode) == ("out\n", "err\n", 0)


def test_engine_ending_the_session_says_why_and_exits_non_zero(server, tmp_path):
    code = 'print("Working", end="", flush=True)\nwhile True:\n    pass\n'
    result = subprocess.run(
        [CLI, "run", "--server", server.url, write(tmp_path, "loop.py", code)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    # On a line of its own after the program's unfinished one, with no \r: this is not a terminal.
    assert result.stdout == "Working"
    assert (
        result.stderr
        == "\nsandbox-engine: the session was ended because no input and no output for too long\n"
    )


def test_a_program_killed_by_a_signal_exits_128_plus_its_number(server, tmp_path):
    code = "import os, signal\nprint('crashing', flush=True)\nos.kill(os.getpid(), signal.SIGSEGV)\n"
    result = subprocess.run(
        [CLI, "run", "--server", server.url, write(tmp_path, "crash.py", code)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.stdout, result.returncode) == ("crashing\n", 139)
    assert result.stderr == "sandbox-engine: killed by SIGSEGV (segmentation fault)\n"


def test_merge_stderr_keeps_the_order_the_program_wrote(server, tmp_path):
    code = (
        "import sys\n"
        "for i in range(20):\n"
        "    print(f'out {i}', flush=True)\n"
        "    print(f'err {i}', file=sys.stderr, flush=True)\n"
    )
    path = write(tmp_path, "both.py", code)
    result = subprocess.run(
        [CLI, "run", "--server", server.url, "--merge-stderr", path],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # One pipe: everything comes as stdout, in exactly the order written.
    expected = "".join(f"out {i}\nerr {i}\n" for i in range(20))
    assert (result.stdout, result.stderr, result.returncode) == (expected, "", 0)


def test_the_server_from_the_variable_and_without_a_scheme(server, tmp_path):
    path = write(tmp_path, "hi.py", "print('hi')")
    address = server.url.removeprefix("http://")
    for args, environ in (
        (["--server", address], {}),
        ([], {"SANDBOX_ENGINE_SERVER": address}),
        ([], {"SANDBOX_ENGINE_SERVER": server.url}),
    ):
        result = subprocess.run(
            [CLI, "run", *args, path],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **environ},
        )
        assert (result.stdout, result.stderr, result.returncode) == ("hi\n", "", 0), args


def test_the_language_is_the_one_the_server_gives_the_extension(server, tmp_path):
    code = 'puts "hello from #{RUBY_ENGINE}"\n'
    result = subprocess.run(
        [CLI, "run", "--server", server.url, write(tmp_path, "hello.rb", code)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.stdout, result.returncode) == ("hello from ruby\n", 0), result.stderr
    result = subprocess.run(
        [CLI, "run", "--server", server.url, write(tmp_path, "hello.cob", "DISPLAY 'hello'.")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert f"no language of {server.url} takes .cob files" in result.stderr and "give --lang" in result.stderr


def test_unreachable_and_refusing_servers_are_one_line_errors(server, tmp_path):
    path = write(tmp_path, "hi.py", "print('hi')")
    for args, says in (
        (
            ["--server", "http://127.0.0.1:9"],
            "sandbox-engine: cannot reach the server at http://127.0.0.1:9: is it running? (make run)\n",
        ),
        (
            ["--server", "127.0.0.1:9", "--lang", "python"],
            "sandbox-engine: cannot reach the server at http://127.0.0.1:9: is it running? (make run)\n",
        ),
        (
            ["--server", "ftp://127.0.0.1:9"],
            "sandbox-engine: ftp://127.0.0.1:9 is not a server URL: give http://HOST:PORT or https://HOST\n",
        ),
        (
            ["--server", server.url, "--lang", "cobol"],
            "unknown language 'cobol'",
        ),
    ):
        result = subprocess.run([CLI, "run", *args, path], capture_output=True, text=True, timeout=60)
        assert result.returncode == 2
        assert says in result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    unknown = subprocess.run([CLI, "run", str(tmp_path / "x.unknown")], capture_output=True, text=True)
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1


def read_until(fd: int, text: bytes, timeout: float = 20) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while text not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"never saw {text!r}; saw {seen!r}"
        if select.select([fd], [], [], remaining)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def in_terminal(args: list[str], slave: int) -> subprocess.Popen:
    """The command with a pseudo-terminal as its controlling terminal, as in a terminal window:
    should it leave the terminal's signal keys on, Ctrl-C and Ctrl-Z would signal it."""
    return subprocess.Popen(
        args,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )


def test_inside_a_real_terminal_with_ctrl_c(server, tmp_path):
    path = write(tmp_path, "wait.py", INTERRUPTIBLE)
    master, slave = pty.openpty()
    saved = termios.tcgetattr(slave)
    process = in_terminal([CLI, "run", "--server", server.url, path], slave)
    try:
        read_until(master, b"Enter your name: ")
        # The local terminal is raw: the remote terminal echoes, and Enter arrives as \r.
        assert termios.tcgetattr(slave)[3] & (termios.ECHO | termios.ISIG) == 0
        os.write(master, b"Ada\r")
        # Ctrl-C once the program is in its try block, not still printing the greeting.
        read_until(master, b"waiting")
        os.write(master, b"\x03")
        output = read_until(master, b"KeyboardInterrupt")
        assert b"interrupted" in output
        assert process.wait(20) == 130
        # The terminal is restored as it was.
        assert termios.tcgetattr(slave) == saved
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
        os.close(slave)


def test_ctrl_z_and_the_end_in_words_inside_a_real_terminal(server, tmp_path):
    # The program reads its terminal raw, so it sees Ctrl-Z as the byte it is, whatever the
    # session's terminal would make of it; then it prompts and is silent until the idle timeout.
    code = (
        "import sys, termios, time, tty\n"
        "saved = termios.tcgetattr(0)\n"
        "tty.setraw(0)\n"
        "print('ready', end='', flush=True)\n"
        "key = sys.stdin.read(1)\n"
        "termios.tcsetattr(0, termios.TCSADRAIN, saved)\n"
        "print(' got', repr(key))\n"
        "print('Waiting', end='', flush=True)\n"
        "time.sleep(60)\n"
    )
    path = write(tmp_path, "keys.py", code)
    master, slave = pty.openpty()
    process = in_terminal([CLI, "run", "--server", server.url, path], slave)
    try:
        read_until(master, b"ready")
        os.write(master, b"\x1a")
        output = read_until(master, b"got '\\x1a'")
        # Not stopped: it goes on relaying the program, and ends with the words on a line of
        # their own, as a raw terminal needs them (\r\n).
        output += read_until(master, b"too long\r\n")
        words = b"sandbox-engine: the session was ended because no input and no output for too long"
        assert output.endswith(b"Waiting\r\n" + words + b"\r\n"), output
        assert process.wait(20) == 137
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
        os.close(slave)


def test_cli_help_lists_run():
    result = subprocess.run(
        [sys.executable, "-m", "sandbox_engine.cli", "run", "--help"], capture_output=True, text=True
    )
    assert "--tty" in result.stdout and "--lang" in result.stdout and "--merge-stderr" in result.stdout
    assert "SANDBOX_ENGINE_SERVER" in result.stdout
