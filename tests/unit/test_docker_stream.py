"""A Docker sandbox's output stream, from a fake attach connection: when a single run's output is
complete."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from sandbox_engine import launch
from sandbox_engine.config import Config
from sandbox_engine.docker_sandbox import DockerSandbox
from sandbox_engine.executor import ProgramEnd, SandboxRef, Stream
from sandbox_engine.languages import LANGUAGES
from sandbox_engine.specs import sandbox_spec


class _Attached:
    """docker-py's SocketIO wrapper: the socket beneath is what the sandbox reads."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock


class _API:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def attach_socket(self, container: str, params: dict) -> _Attached:
        return _Attached(self.sock)


def frame(stream: Stream, data: bytes) -> bytes:
    """One frame of Docker's multiplexed attach stream."""
    return struct.pack(">BxxxI", 1 if stream is Stream.STDOUT else 2, len(data)) + data


LAST = b"".join(b"err %05d %s\n" % (i, b"x" * 40) for i in range(2000)) + b"last\n"


def run_with_a_pause_in_stderr(ends_stderr: bool) -> bytes:
    """The EXIT mark on stdout, then stderr only after a pause longer than SETTLE (as Docker's
    copy of a backlog of stderr pauses under load), then its END mark; the stderr read."""
    ours, theirs = socket.socketpair()
    ref = SandboxRef("c1", "python", running=True, ends_stderr=ends_stderr)
    sandbox = DockerSandbox(_API(ours), ref, "s1", remove=lambda: None)
    sandbox.start(b"print(1)")
    nonce = sandbox._nonce

    def launcher() -> None:
        theirs.recv(65536)  # the header
        theirs.sendall(
            frame(Stream.STDOUT, b"done\n" + launch.mark(launch.EXIT, nonce)[:-1] + b" 5 0 1 2 3 -\n")
        )
        time.sleep(0.1)
        theirs.sendall(frame(Stream.STDERR, LAST) + frame(Stream.STDERR, launch.mark(launch.END, nonce)))

    thread = threading.Thread(target=launcher)
    thread.start()
    stderr, ended = b"", False
    try:
        for item in sandbox.output():
            if isinstance(item, ProgramEnd):
                ended = True
            elif isinstance(item, tuple) and item[0] is Stream.STDERR:
                stderr += item[1]
    finally:
        thread.join()
        sandbox.remove()
        theirs.close()
    assert ended
    return stderr


def test_a_launcher_that_ends_stderr_has_all_of_it_whatever_the_pause():
    assert run_with_a_pause_in_stderr(ends_stderr=True) == LAST


def test_under_se_run_a_quiet_moment_after_the_exit_mark_ends_the_output():
    # se-run writes no END for a single run: a pause longer than SETTLE is taken for its end.
    assert run_with_a_pause_in_stderr(ends_stderr=False) == b""


@pytest.mark.parametrize(
    ("language", "ends"),
    [
        ("python", True),
        ("javascript", True),
        ("typescript", True),
        ("ruby", True),
        ("php", True),
        ("c", False),
        ("bash", False),
    ],
)
def test_the_launchers_that_end_stderr(language, ends):
    spec = sandbox_spec(Config(), LANGUAGES[language], None, False)
    assert launch.ends_stderr(launch.command(spec)) is ends
