"""A session's states and the reasons it ends: the one place that names them.

Both are StrEnums, so they are their own JSON: records, messages and logs carry the same words.
"""

from __future__ import annotations

import enum
import signal


class State(enum.StrEnum):
    CREATED = "CREATED"
    COMPILING = "COMPILING"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    TERMINATED = "TERMINATED"

    @property
    def final(self) -> bool:
        return self in (State.FINISHED, State.TERMINATED)


class Reason(enum.StrEnum):
    # The program ended by itself (FINISHED).
    EXITED = "exited"
    COMPILE_ERROR = "compile_error"
    # The engine ended it (TERMINATED).
    KILLED = "killed"
    IDLE_TIMEOUT = "idle_timeout"
    # Silent at a prompt, with a client attached, for the input timeout.
    INPUT_TIMEOUT = "input_timeout"
    TIMEOUT = "timeout"
    OUTPUT_LIMIT = "output_limit"
    MEMORY_LIMIT = "memory_limit"
    CLIENT_DISCONNECTED = "client_disconnected"
    SERVER_SHUTDOWN = "server_shutdown"
    INTERNAL_ERROR = "internal_error"

    @property
    def state(self) -> State:
        """The final state a session ending for this reason is in."""
        return State.FINISHED if self in (Reason.EXITED, Reason.COMPILE_ERROR) else State.TERMINATED


def signal_name(exit_code: int | None) -> str | None:
    """The signal that ended a program, from its exit code as the sandbox's init reports it
    (128 + the signal's number); None when it exited by itself. A program that calls exit(139)
    looks the same as one killed by SIGSEGV: the runtime tells them apart no better."""
    if exit_code is None or not 128 < exit_code < 128 + signal.NSIG:
        return None
    try:
        return signal.Signals(exit_code - 128).name
    except ValueError:
        return None
