"""A run's limits, when they expire, and how its end is decided: pure functions over the clock.

The session's watchdog and pump call these; they hold no state of their own, so the rules read
in one place and are tested without threads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .executor import Limits
from .states import Reason, State

# How long a killed program may take to go before the run gives up waiting on it.
KILL_WAIT = 10.0
# The exit status of a program the engine killed: SIGKILL's, as the sandbox's init reports it.
KILLED_BY_US = 128 + 9
# Once an end is asked for, how long the kill has before the sandbox is cut off (its streams
# closed, which frees the daemon on both sides, and the container removed by force): a kill that
# Docker cannot carry out must not keep a run, or its slot, alive.
KILL_GRACE = 3.0
# How far past its compile and run timeouts any run may go, whatever happens: its hard deadline.
DEADLINE_GRACE = 15.0


@dataclass(frozen=True)
class RunLimits:
    idle_timeout: float
    run_timeout: float
    output_limit: int
    compile_timeout: float = 60.0
    # The sandbox's limits for the run stage, applied once a compile stage is over.
    sandbox: Limits | None = None
    # Instead of the idle timeout while the program waits at a prompt and a client is attached.
    input_timeout: float = 300.0
    # Bytes of input that may wait for a program that is not reading them.
    input_limit: int = 2 << 20
    kill_grace: float = KILL_GRACE
    deadline_grace: float = DEADLINE_GRACE

    def hard_deadline(self, compiles: bool) -> float:
        """Seconds after its start that no run outlives."""
        return (self.compile_timeout if compiles else 0.0) + self.run_timeout + self.deadline_grace


def expired(
    limits: RunLimits,
    now: float,
    compiling: bool,
    started: float,
    activity: Callable[[], float],
    at_prompt: Callable[[], bool],
) -> tuple[Reason | None, float]:
    """The timeout that has expired, if any, and when to look again. `activity` gives the time
    of the last input or output; `at_prompt` whether the program waits for its user now (asked
    only when it has been silent past the idle timeout)."""
    if compiling:
        deadline = started + limits.compile_timeout
        return (Reason.TIMEOUT if now >= deadline else None), deadline
    last = activity()
    idle_deadline = last + limits.idle_timeout
    run_deadline = started + limits.run_timeout
    if now >= run_deadline:
        return Reason.TIMEOUT, run_deadline
    if now < idle_deadline:
        return None, min(idle_deadline, run_deadline)
    # Silent past the idle timeout. A program waiting for its user at a prompt, with the user
    # there, has the input timeout instead; asked again every idle timeout, in case it stopped
    # waiting and went quiet for another reason.
    waiting = at_prompt()
    if activity() != last:
        return None, now  # input or output came while the runtime was asked: look again
    if not waiting:
        return Reason.IDLE_TIMEOUT, idle_deadline
    input_deadline = last + limits.input_timeout
    if now >= input_deadline:
        return Reason.INPUT_TIMEOUT, input_deadline
    return None, min(input_deadline, now + limits.idle_timeout, run_deadline)


def decide_end(
    asked: Reason | None, exit_code: int | None, oom: bool, lost: bool, compile_failed: bool
) -> tuple[Reason, int | None]:
    """The reason and exit code a run reports: the end asked for, if any; else what the exit says."""
    reason = asked
    if reason is None:
        if lost:
            reason = Reason.INTERNAL_ERROR
        elif oom:
            reason = Reason.MEMORY_LIMIT
        elif compile_failed:
            reason = Reason.COMPILE_ERROR
        else:
            reason = Reason.EXITED
    if exit_code is None and reason.state is State.TERMINATED and reason is not Reason.INTERNAL_ERROR:
        # The engine killed it (SIGKILL), here or through another worker, and its sandbox was
        # gone before its status was read: the outcome is the same whichever came first.
        exit_code = KILLED_BY_US
    return reason, exit_code
