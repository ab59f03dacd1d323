"""One session's run: the program's life from start to its final state, with its timers and limits.

A run owns its threads (greenlets under gunicorn's gevent worker): the pump, which carries
output to the client and decides the outcome when the program's streams close; the watchdog,
which enforces the compile, idle and wall-clock timeouts, paces resizes and cuts off a sandbox
whose kill does not take; stdin's writer (see stdin); and a killer once an end is asked for.
All end with the run, and the pump joins the others before the run counts as finished.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .errors import EngineError, Kind
from .executor import (
    CompileResult,
    ExecutorError,
    ProgramEnd,
    Sandbox,
    Started,
    StderrEnd,
    Stream,
    Terminal,
    Usage,
)
from .pacing import Controls
from .protocol import (
    ClientMessage,
    Eof,
    Input,
    Kill,
    ProtocolError,
    Resize,
    Signal,
    StreamDecoder,
    state_message,
    utf8_prefix,
)
from .states import Reason, State
from .stdin import InputOverflow, Stdin
from .timeouts import KILL_WAIT, RunLimits, decide_end, expired

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    exit_code: int | None
    reason: Reason
    started_at: float
    ended_at: float
    # What the program used, as its launcher measured it; None when it never ended by itself
    # (a kill ends the launcher with it).
    usage: Usage | None = None
    # Bytes of stdout and stderr the client was sent.
    output_bytes: int = 0

    @property
    def state(self) -> State:
        return self.reason.state


class SessionRun:
    """Drives one claimed sandbox. `emit` sends a protocol message to the client; it may raise
    when the client is gone, which ends the run with `client_disconnected`. After the final
    state message the run closes the client with `close_client`; `abort_client` cuts the client
    off without waiting on it, for a run past its deadline whose client does not read."""

    def __init__(
        self,
        sandbox: Sandbox,
        limits: RunLimits,
        emit: Callable[[dict], None],
        close_client: Callable[[], None],
        on_end: Callable[[Outcome], None],
        release: Callable[[], None],
        external_reason: Callable[[], Reason | None] = lambda: None,
        on_state: Callable[[State], None] = lambda state: None,
        clock: Callable[[], float] = time.monotonic,
        abort_client: Callable[[], None] = lambda: None,
    ) -> None:
        self.sandbox = sandbox
        self.limits = limits
        self._emit = emit
        self._close_client = close_client
        self._abort_client = abort_client
        # on_end records the outcome; release removes the sandbox once the client has been told.
        self._on_end = on_end
        self._release = release
        # Another worker may have asked for the end (DELETE landing elsewhere); this reads that.
        self._external_reason = external_reason
        self._on_state = on_state
        self._clock = clock
        self._reason: Reason | None = None
        # When the end was asked for, on the clock: the kill's grace runs from there.
        self._ending_since: float | None = None
        self._lock = threading.Lock()
        self._finished = threading.Event()
        # Set when the pump has delivered the end: the watchdog then returns.
        self._done = threading.Event()
        self._wake = threading.Event()
        self._last_activity = clock()
        self._started = clock()
        self._client_gone = False
        self._compiling = sandbox.compiles
        # A tty's input waits until the terminal is ready for it (see Started).
        self._terminal_ready = not sandbox.tty
        self._compile_failed = False
        self._usage: Usage | None = None
        # The program's end as its launcher reported it in-band (see _exit_status).
        self._program_end: ProgramEnd | None = None
        # Input waits while compiling, or until a terminal is ready for it.
        self._stdin = Stdin(sandbox, limits.input_limit, held=self._compiling or not self._terminal_ready)
        self._controls = Controls(sandbox, clock, self._wake.set)
        # Set when the run starts (see start).
        self._hard_deadline = float("inf")
        self.outcome: Outcome | None = None
        self.started_at = time.time()
        self._pump_thread: threading.Thread | None = None
        self._watchdog_thread: threading.Thread | None = None
        self._killer: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------
    def start(self, code: bytes, terminal: Terminal | None = None, merge_stderr: bool = False) -> None:
        """Start the sandbox with the program, and the run's threads. Raises if it cannot start."""
        self.sandbox.start(code, terminal, merge_stderr)
        self.started_at = time.time()
        self._started = self._last_activity = self._clock()
        self._hard_deadline = self._started + self.limits.hard_deadline(self.sandbox.compiles)
        self._send(state_message(State.COMPILING if self._compiling else State.RUNNING))
        self._stdin.start(f"se-stdin-{self.sandbox.session_id}")
        self._pump_thread = self._thread(self._pump, "pump")
        self._watchdog_thread = self._thread(self._watchdog, "watch")

    def _thread(self, target: Callable[[], None], role: str) -> threading.Thread:
        """A thread of this run's; the pump joins the others before the run is finished."""
        thread = threading.Thread(target=target, name=f"se-{role}-{self.sandbox.session_id}", daemon=True)
        thread.start()
        return thread

    def end(self, reason: Reason) -> None:
        """Ask the run to end: the first reason given is the one reported. Never blocks."""
        with self._lock:
            if self._reason is not None or self._finished.is_set():
                return
            self._reason = reason
            self._ending_since = self._clock()
            # Killed from its own thread: Docker's kill waits until the output is drained, and
            # the pump, which may be the caller here, must keep draining meanwhile. Started
            # under the lock, so that the pump, which takes the last reason under it too, always
            # finds the killer it must join.
            self._killer = self._thread(self._kill, "kill")
        self._wake.set()  # the watchdog now times the kill

    def _kill(self) -> None:
        try:
            self.sandbox.kill()
        except ExecutorError as exc:
            # The pump notices the runtime is gone too and finishes the run without it.
            log.warning("kill of %s failed: %s", self.sandbox.session_id, exc)

    def wait(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)

    def join(self, timeout: float) -> bool:
        """Wait until the run is finished and its last thread, the pump, has returned."""
        deadline = time.monotonic() + timeout
        if not self.wait(timeout):
            return False
        if self._pump_thread is not None and self._pump_thread is not threading.current_thread():
            self._pump_thread.join(max(0.0, deadline - time.monotonic()))
            return not self._pump_thread.is_alive()
        return True

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def client_gone(self) -> None:
        self._client_gone = True
        self.end(Reason.CLIENT_DISCONNECTED)

    # --- client messages -----------------------------------------------------------------
    def handle(self, message: ClientMessage) -> None:
        """Act on a client message: ProtocolError when it cannot apply to this session,
        EngineError (input_limit) when the client sends faster than the program reads."""
        try:
            self._handle(message)
        except InputOverflow as exc:
            raise EngineError(Kind.INPUT_LIMIT, str(exc)) from exc
        except ExecutorError as exc:
            # A control that cannot reach the sandbox is lost with it; the pump reports the end.
            log.warning("message to %s failed: %s", self.sandbox.session_id, exc)

    def _handle(self, message: ClientMessage) -> None:
        if isinstance(message, Kill):
            self.end(Reason.KILLED)
        elif isinstance(message, Signal):
            self._controls.signal(message.name)
        elif isinstance(message, Resize):
            if not self.sandbox.tty:
                raise ProtocolError('resize needs a tty session (POST /session with "tty": true)')
            # The watchdog applies a coalesced size when it is due.
            self._controls.resize(message.cols, message.rows)
        elif isinstance(message, Input | Eof):
            self._last_activity = self._clock()
            self._stdin.put(message.data if isinstance(message, Input) else None)

    # --- threads -------------------------------------------------------------------------
    def _watchdog(self) -> None:
        while not self._done.is_set():
            now = self._clock()
            reason, deadline = expired(
                self.limits,
                now,
                self._compiling,
                self._started,
                lambda: self._last_activity,
                lambda: not self._client_gone and self._waiting_for_input(),
            )
            if reason:
                self.end(reason)
            if self._ending_since is not None:
                # Ending: the kill has its grace, then the sandbox is cut off.
                deadline = self._ending_since + self.limits.kill_grace
                if now >= deadline:
                    self._cut_off("its kill did not end it")
                    return
            if now >= self._hard_deadline:
                self.end(Reason.TIMEOUT)
                self._cut_off("it passed its hard deadline")
                return
            deadline = min(deadline, self._hard_deadline, self._controls.apply_due(now))
            self._wake.wait(max(0.0, deadline - now))
            self._wake.clear()

    def _waiting_for_input(self) -> bool:
        try:
            return self.sandbox.waiting_for_input()
        except ExecutorError as exc:
            log.info("cannot tell whether %s waits for input: %s", self.sandbox.session_id, exc)
            return False

    def _cut_off(self, why: str) -> None:
        """Close the sandbox's streams and remove it by force, and let go of the client: the
        pump then reads the end of the streams and finishes the run with the reason asked for."""
        log.warning("cutting off session %s: %s", self.sandbox.session_id, why)
        self._abort_client()
        try:
            self.sandbox.remove()
        except ExecutorError as exc:
            log.warning("could not remove the sandbox of %s: %s", self.sandbox.session_id, exc)

    def _pump(self) -> None:
        decoders = {Stream.STDOUT: StreamDecoder(), Stream.STDERR: StreamDecoder()}
        remaining = self.limits.output_limit
        try:
            for item in self.sandbox.output():
                self._last_activity = self._clock()
                if isinstance(item, Started):
                    self._terminal_ready = True
                    self._release_input()
                    continue
                if isinstance(item, ProgramEnd | StderrEnd):
                    # A session's program ends once: what it used goes with its final state.
                    self._usage = item.usage if isinstance(item, ProgramEnd) else self._usage
                    self._program_end = item if isinstance(item, ProgramEnd) else self._program_end
                    continue
                if isinstance(item, CompileResult):
                    if item.exit_code == 0 and self._reason is None:
                        self._begin_running()
                    else:
                        self._compile_failed = item.exit_code != 0
                    continue
                stream, chunk = item
                if self._reason is Reason.OUTPUT_LIMIT:
                    # Cut at the limit: nothing more is delivered, only drained. After any other
                    # end, what the program wrote before it died still reaches the client, whole.
                    continue
                if len(chunk) > remaining:
                    chunk = utf8_prefix(chunk, remaining)
                    self._deliver(stream, decoders[stream].decode(chunk))
                    remaining = 0
                    self.end(Reason.OUTPUT_LIMIT)
                    continue
                remaining -= len(chunk)
                self._deliver(stream, decoders[stream].decode(chunk))
            if self._reason is None:
                for stream, decoder in decoders.items():
                    self._deliver(stream, decoder.flush())
        except ExecutorError as exc:
            log.warning("session %s lost its sandbox: %s", self.sandbox.session_id, exc)
            self.end(self._external_reason() or Reason.INTERNAL_ERROR)
        except Exception:
            log.exception("pump of %s failed", self.sandbox.session_id)
            self.end(Reason.INTERNAL_ERROR)
        self._finish(self.limits.output_limit - remaining)

    def _begin_running(self) -> None:
        """The compile stage is over: the run's limits, then its timers, then the program."""
        limits = self.limits.sandbox
        if limits is not None:
            self.sandbox.set_limits(limits)
        self.started_at = time.time()
        self._started = self._last_activity = self._clock()
        self._on_state(State.RUNNING)
        self._send(state_message(State.RUNNING))
        self.sandbox.go()
        self._compiling = False
        self._release_input()
        self._wake.set()

    def _release_input(self) -> None:
        if not self._compiling and self._terminal_ready:
            self._stdin.release()

    def _deliver(self, stream: Stream, text: str) -> None:
        if text:
            self._send({"type": stream.value, "data": text})

    def _send(self, message: dict) -> None:
        if self._client_gone:
            return
        try:
            self._emit(message)
        except Exception:
            self.client_gone()

    def _finish(self, output_bytes: int) -> None:
        with self._lock:
            asked = self._reason is not None
        exit_code, oom, lost = exit_status(self.sandbox, None if asked else self._program_end)
        with self._lock:
            asked = self._reason or self._external_reason()
            reason, exit_code = decide_end(asked, exit_code, oom, lost, self._compile_failed)
            self._reason = reason
        self.outcome = Outcome(exit_code, reason, self.started_at, time.time(), self._usage, output_bytes)
        try:
            # Recorded before the client hears of it, so a GET right after sees the same ending.
            self._on_end(self.outcome)
            self._send(state_message(reason.state, exit_code, reason, self._usage))
            self._close_client()
        finally:
            try:
                self._release()
            finally:
                self._done.set()
                self._wake.set()
                self._stdin.close()
                self._join_helpers()
                self._finished.set()

    def _join_helpers(self) -> None:
        """The watchdog returns once woken; stdin's writer and a kill return once the sandbox
        is gone (removed just now), or are given up on after KILL_WAIT."""
        if not self._stdin.join(KILL_WAIT):
            log.warning("stdin's writer of %s did not return in time", self.sandbox.session_id)
        _join((self._watchdog_thread, self._killer))


def exit_status(sandbox: Sandbox, end: ProgramEnd | None) -> tuple[int | None, bool, bool]:
    """The exit code, whether the memory limit killed it, whether the runtime was lost. From the
    launcher's EXIT mark (`end`) when the program ended by itself: the final state then need not
    wait for the sandbox to stop (it is removed after the client is told). A SIGKILL may be the
    memory limit's, which only the runtime can tell."""
    if end is not None and end.signal != signal.SIGKILL:
        return (end.exit_code if end.exit_code is not None else 128 + end.signal), False, False
    try:
        status = sandbox.wait(KILL_WAIT)
        if status.ended_before:
            log.warning("the sandbox of %s had ended before it was given the program", sandbox.session_id)
            return None, False, True
        return status.exit_code, status.oom_killed, False
    except ExecutorError as exc:
        log.warning("no exit status for %s: %s", sandbox.session_id, exc)
        return None, False, True


def _join(threads: tuple[threading.Thread | None, ...]) -> None:
    for thread in threads:
        if thread is not None:
            thread.join(KILL_WAIT)
            if thread.is_alive():
                log.warning("%s did not return within %.0f s", thread.name, KILL_WAIT)
