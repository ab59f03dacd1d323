"""Starting a warm pool's container, and knowing when its launcher is ready for a program; and
starting its compile stage ahead, to wait for the code (see launch.compile_waiter).

The pool offers a sandbox to sessions only once its launcher waits on stdin (see pool_members),
so that a session taken the moment it is offered never meets a launcher still starting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import docker

from .docker_sandbox import (
    READY_TIMEOUT,
    close_socket,
    compile_exec,
    first_pid,
    wait_until_ready,
    waiting_on_stdin,
)
from .executor import ExecutorError, SandboxSpec
from .launch import compile_waiter


def start_warm(
    api: docker.APIClient,
    container: str,
    tty: bool,
    gvisor: bool,
    starts: threading.BoundedSemaphore,
    translated: Callable,
) -> None:
    """Start a pool's sandbox, and return once its launcher waits for a program on stdin: a
    tty's once the launcher said its terminal is raw, so that a session's header, sent the
    moment it is taken, is never typed into a cooked terminal (echoed, and read a line at a
    time); a pipe's once the host's /proc shows it reading stdin, so that a session never pays
    for the interpreter's start. A pipe holds the header meanwhile: where /proc cannot tell
    (gVisor's kernel is its own), it is offered at once all the same."""
    sock = None
    if tty:
        # Attached before the start (output before an attach is lost), stdout alone: closing it
        # then leaves the stdin that the session's attach uses open.
        with translated("attach to a pool sandbox"):
            attached = api.attach_socket(container, params={"stdout": 1, "stream": 1})
        sock = getattr(attached, "_sock", attached)
    try:
        with starts, translated("start a pool sandbox"):
            api.start(container)
        if sock is not None and wait_until_ready(sock) is None:
            raise ExecutorError("a pool sandbox ended before its terminal was ready")
        if sock is None and not gvisor:
            _wait_reading(api, container, translated)
    finally:
        if sock is not None:
            close_socket(sock)


def _wait_reading(api: docker.APIClient, container: str, translated: Callable) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    pause = 0.005
    # One inspect, then the host's cgroup and /proc alone on each look (see waiting_on_stdin).
    pid = first_pid(api, container, translated)
    while time.monotonic() < deadline and not waiting_on_stdin(api, container, translated, pid):
        time.sleep(pause)
        pause = min(pause * 1.5, 0.05)


def compiles_ahead(spec: SandboxSpec, gvisor: bool) -> bool:
    """Whether a pool sandbox of this spec has its compile stage started ahead (compile_waiter),
    its launcher (the sh or the fork launcher) relaying it, or on a terminal telling it the
    terminal's name (see launch.COMPILE_TTY): not on a terminal under gVisor, whose terminal is
    the host's, which nothing in the sandbox can open by a name (`tty` says "not a tty" there)."""
    return spec.compile is not None and not (spec.tty and gvisor)


def start_compile(
    api: docker.APIClient,
    container: str,
    uid: int,
    compile: tuple[str, ...],
    tty: bool,
    translated: Callable,
) -> str:
    """Start a pool sandbox's compile stage ahead, detached, as DockerSandbox._compile_stage runs
    it (the sandbox's uid in the compile stage's group, a nonce of its own, given before any code
    of the user's is there): it waits for the launcher's relay, or on a terminal for its name
    (no terminal of its own: it writes into the sandbox's). Returns the nonce."""
    with translated("start a pool sandbox's compile stage"):
        exec_id, nonce = compile_exec(api, container, uid, compile_waiter(compile, tty=tty), tty=False)
        api.exec_start(exec_id, detach=True)
    return nonce
