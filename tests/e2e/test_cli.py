"""`sandbox-engine run` against the real server: pipes, a real pseudo-terminal, and refusals."""

from __future__ import annotations

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
    result = subprocess.run(
        [CLI, "run", "--server", server.url, write(tmp_path, "loop.py", "while True:\n    pass\n")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "no input and no output for too long" in result.stderr


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
        (["--server", "http://127.0.0.1:9"], "cannot reach"),
        (["--server", server.url, "--lang", "cobol"], "unknown language 'cobol'"),
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


def test_inside_a_real_terminal_with_ctrl_c(server, tmp_path):
    path = write(tmp_path, "wait.py", INTERRUPTIBLE)
    master, slave = pty.openpty()
    saved = termios.tcgetattr(slave)
    process = subprocess.Popen(
        [CLI, "run", "--server", server.url, path],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    try:
        read_until(master, b"Enter your name: ")
        # The local terminal is raw: the remote terminal echoes, and Enter arrives as \r.
        assert termios.tcgetattr(slave)[3] & termios.ECHO == 0
        os.write(master, b"Ada\r")
        read_until(master, b"Hello Ada")
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


def test_cli_help_lists_run():
    result = subprocess.run(
        [sys.executable, "-m", "sandbox_engine.cli", "run", "--help"], capture_output=True, text=True
    )
    assert "--tty" in result.stdout and "--lang" in result.stdout
