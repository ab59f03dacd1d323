"""SessionRun: one program's life as its client sees it, driven by a scripted fake sandbox."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from fakes import KILLED, FakeClient, FakeSandbox

from sandbox_engine.errors import EngineError, Kind
from sandbox_engine.executor import ExecutorError, Limits
from sandbox_engine.protocol import Eof, Input, Kill, ProtocolError, Resize, Signal, utf8_prefix
from sandbox_engine.session import Outcome, SessionRun
from sandbox_engine.states import Reason, State, signal_name
from sandbox_engine.timeouts import RunLimits

RUNNING = {"type": "state", "state": "RUNNING"}
COMPILING = {"type": "state", "state": "COMPILING"}
RUN_LIMITS = Limits(memory=256 << 20, cpus=0.5, pids=32, disk=64 << 20)
# Generous bounds for a run to end once its end is due; a passing test never waits this long.
END = 5.0


def final(state: str, exit_code: int | None, reason: str) -> dict:
    return {
        "type": "state",
        "state": state,
        "exitCode": exit_code,
        "reason": reason,
        "signal": signal_name(exit_code),
        "usage": None,
    }


@dataclass
class Harness:
    run: SessionRun
    sandbox: FakeSandbox
    client: FakeClient
    outcomes: list[Outcome] = field(default_factory=list)
    released: int = 0

    def ended(self) -> Outcome:
        """Wait for the run's end and return how it ended."""
        assert self.run.wait(END), "the run did not end"
        assert self.outcomes == [self.run.outcome]
        return self.run.outcome


@pytest.fixture
def make_run() -> Iterator[Callable[..., Harness]]:
    harnesses: list[Harness] = []

    def make(
        idle_timeout: float = 10.0,
        run_timeout: float = 20.0,
        output_limit: int = 1 << 20,
        client: FakeClient | None = None,
        external_reason: Callable[[], Reason | None] = lambda: None,
        compiles: bool = False,
        tty: bool = False,
        compile_timeout: float = 10.0,
        input_limit: int = 1 << 20,
        kill_grace: float = 3.0,
        deadline_grace: float = 15.0,
        input_timeout: float = 300.0,
    ) -> Harness:
        sandbox = FakeSandbox(str(uuid.uuid4()), compiles=compiles, tty=tty)
        client = client or FakeClient()

        def on_end(outcome: Outcome) -> None:
            client.events.append("recorded")
            harness.outcomes.append(outcome)

        def release() -> None:
            client.events.append("released")
            harness.released += 1
            sandbox.remove()  # as the engine's release does: its streams close

        run = SessionRun(
            sandbox,
            RunLimits(
                idle_timeout,
                run_timeout,
                output_limit,
                compile_timeout,
                RUN_LIMITS,
                input_limit=input_limit,
                kill_grace=kill_grace,
                deadline_grace=deadline_grace,
                input_timeout=input_timeout,
            ),
            client.emit,
            client.close,
            on_end=on_end,
            release=release,
            external_reason=external_reason,
        )
        harness = Harness(run, sandbox, client)
        harnesses.append(harness)
        return harness

    yield make
    for harness in harnesses:
        if harness.sandbox.started:
            harness.run.end(Reason.KILLED)
            assert harness.run.wait(END)


# --- normal ends ----------------------------------------------------------------------------


def test_output_arrives_in_order_then_the_run_finishes(make_run):
    h = make_run()
    h.run.start(b"")
    assert h.sandbox.started
    h.sandbox.stdout("hello\n")
    h.sandbox.stderr("oops\n")
    h.sandbox.stdout("bye\n")
    h.sandbox.exit(0)

    outcome = h.ended()
    assert h.client.messages == [
        RUNNING,
        {"type": "stdout", "data": "hello\n"},
        {"type": "stderr", "data": "oops\n"},
        {"type": "stdout", "data": "bye\n"},
        final(State.FINISHED, 0, "exited"),
    ]
    assert (outcome.state, outcome.exit_code, outcome.reason) == (State.FINISHED, 0, "exited")
    assert outcome.started_at <= outcome.ended_at
    assert h.sandbox.kills == 0


def test_the_end_is_recorded_before_the_client_hears_it_then_closed_then_released(make_run):
    h = make_run()
    h.run.start(b"")
    h.sandbox.exit(0)
    h.ended()
    assert h.client.events[-4:] == ["recorded", final(State.FINISHED, 0, "exited"), "closed", "released"]
    assert h.released == 1


def test_a_non_zero_exit_code_is_reported_as_finished(make_run):
    h = make_run()
    h.run.start(b"")
    h.sandbox.stderr("Traceback: boom\n")
    h.sandbox.exit(3)
    assert h.ended().exit_code == 3
    assert h.client.final == final(State.FINISHED, 3, "exited")


def test_a_character_split_across_chunks_reaches_the_client_whole(make_run):
    h = make_run()
    h.run.start(b"")
    emoji = "😀".encode()
    h.sandbox.stdout(b"cost: \xe2\x82")
    h.sandbox.stderr(emoji[:1])
    h.sandbox.stdout(b"\xac\n")
    h.sandbox.stderr(emoji[1:])
    h.sandbox.exit(0)
    h.ended()
    assert h.client.text("stdout") == "cost: €\n"
    assert h.client.text("stderr") == "😀"
    assert all(m["data"] for m in h.client.messages if m["type"] != "state"), "no empty messages"


def test_invalid_and_unfinished_bytes_become_replacement_characters(make_run):
    h = make_run()
    h.run.start(b"")
    h.sandbox.stdout(b"a\xffb")
    h.sandbox.stdout(b"c\xe2\x82")
    h.sandbox.exit(0)
    h.ended()
    assert h.client.text() == "a\ufffdbc\ufffd"


# --- client messages ------------------------------------------------------------------------


def test_input_is_written_to_the_program(make_run):
    h = make_run()
    h.run.start(b"")
    h.run.handle(Input(b"Ada\n"))
    h.run.handle(Input("€\n".encode()))
    assert h.sandbox.wait_writes(2) == [b"Ada\n", "€\n".encode()]
    h.sandbox.exit(0)
    h.ended()


def test_eof_closes_the_program_stdin(make_run):
    h = make_run()
    h.run.start(b"")
    h.run.handle(Eof())
    assert h.sandbox.wait_stdin_closed()
    h.sandbox.stdout("read 0 lines\n")
    h.sandbox.exit(0)
    h.ended()
    assert h.client.final == final(State.FINISHED, 0, "exited")


def test_kill_terminates_the_program(make_run):
    h = make_run()
    h.run.start(b"")
    h.sandbox.stdout("working\n")
    h.run.handle(Kill())
    outcome = h.ended()
    assert h.sandbox.kills == 1
    assert (outcome.state, outcome.reason) == (State.TERMINATED, "killed")
    assert h.client.final == final(State.TERMINATED, KILLED.exit_code, "killed")


def test_the_first_reason_to_end_is_the_one_reported(make_run):
    h = make_run()
    h.run.start(b"")
    h.run.end(Reason.KILLED)
    h.run.end(Reason.TIMEOUT)
    h.ended()
    assert h.client.final["reason"] == "killed"
    assert h.sandbox.kills == 1


# --- limits ---------------------------------------------------------------------------------


def test_output_over_the_limit_is_cut_and_the_program_terminated(make_run):
    h = make_run(output_limit=10)
    h.run.start(b"")
    h.sandbox.stdout("12345")
    h.sandbox.stdout("67890abc")
    h.sandbox.stdout("never seen")
    outcome = h.ended()
    assert h.client.text() == "1234567890"
    assert (outcome.state, outcome.reason) == (State.TERMINATED, "output_limit")
    assert h.client.final == final(State.TERMINATED, KILLED.exit_code, "output_limit")
    assert h.sandbox.kills == 1


def test_the_limit_counts_stdout_and_stderr_together(make_run):
    h = make_run(output_limit=6)
    h.run.start(b"")
    h.sandbox.stdout("abc")
    h.sandbox.stderr("defgh")
    h.ended()
    assert (h.client.text("stdout"), h.client.text("stderr")) == ("abc", "def")
    assert h.client.final["reason"] == "output_limit"


def test_output_exactly_at_the_limit_is_not_cut(make_run):
    h = make_run(output_limit=10)
    h.run.start(b"")
    h.sandbox.stdout("1234567890")
    h.sandbox.exit(0)
    h.ended()
    assert h.client.text() == "1234567890"
    assert h.client.final == final(State.FINISHED, 0, "exited")


def test_a_character_straddling_the_limit_is_left_out_whole(make_run):
    h = make_run(output_limit=5)
    h.run.start(b"")
    h.sandbox.stdout("abcd€")  # the euro sign's 3 bytes would end at byte 7
    h.ended()
    assert h.client.text() == "abcd"
    assert h.client.final["reason"] == "output_limit"


def test_a_split_character_that_fits_is_delivered_at_the_limit(make_run):
    h = make_run(output_limit=6)
    h.run.start(b"")
    h.sandbox.stdout(b"abc\xe2\x82")
    h.sandbox.stdout(b"\xaczz")
    h.ended()
    assert h.client.text() == "abc€"
    assert h.client.final["reason"] == "output_limit"


def test_a_split_character_that_does_not_fit_is_never_half_delivered(make_run):
    h = make_run(output_limit=5)
    h.run.start(b"")
    h.sandbox.stdout(b"abc\xe2\x82")
    h.sandbox.stdout(b"\xaczz")
    h.ended()
    assert h.client.text() == "abc"
    assert h.client.final["reason"] == "output_limit"


def test_never_more_than_the_limit_is_delivered_whatever_the_chunking(make_run):
    rng = random.Random(3)
    alphabet = "ab\né€😀"
    for _ in range(60):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 25)))
        data = text.encode()
        limit = rng.randint(1, len(data) + 3)
        h = make_run(output_limit=limit)
        h.run.start(b"")
        i = 0
        while i < len(data):
            step = rng.randint(1, 6)
            h.sandbox.stdout(data[i : i + step])
            i += step
        h.sandbox.exit(0)
        h.ended()
        delivered = h.client.text()
        assert len(delivered.encode()) <= limit
        # The longest whole-character prefix that fits: nothing cut, nothing replaced.
        assert delivered == utf8_prefix(data, limit).decode(), (text, limit)
        expected = "exited" if len(data) <= limit else "output_limit"
        assert h.client.final["reason"] == expected, (text, limit)


def test_idle_timeout_ends_a_silent_program(make_run):
    h = make_run(idle_timeout=0.2)
    started = time.monotonic()
    h.run.start(b"")
    outcome = h.ended()
    assert time.monotonic() - started >= 0.2
    assert (outcome.state, outcome.reason) == (State.TERMINATED, "idle_timeout")
    assert h.client.final == final(State.TERMINATED, KILLED.exit_code, "idle_timeout")
    assert h.sandbox.kills == 1


def test_input_keeps_a_session_from_going_idle(make_run):
    h = make_run(idle_timeout=0.3)
    h.run.start(b"")
    for _ in range(6):  # 0.6 s in all, twice the idle timeout
        assert not h.run.wait(0.1), "ended while the user was typing"
        h.run.handle(Input(b"x"))
    last_input = time.monotonic()
    assert h.ended().reason == "idle_timeout"
    assert time.monotonic() - last_input >= 0.3
    assert h.sandbox.wait_writes(6) == [b"x"] * 6


def test_output_keeps_a_session_from_going_idle(make_run):
    h = make_run(idle_timeout=0.3)
    h.run.start(b"")
    for _ in range(6):
        assert not h.run.wait(0.1), "ended while the program was printing"
        h.sandbox.stdout(".")
    assert h.ended().reason == "idle_timeout"
    assert h.client.text() == "......"


def test_run_timeout_ends_a_busy_program(make_run):
    h = make_run(idle_timeout=10.0, run_timeout=0.3)
    started = time.monotonic()
    h.run.start(b"")
    deadline = started + END
    while not h.run.wait(0.05) and time.monotonic() < deadline:
        h.sandbox.stdout("tick\n")
    outcome = h.ended()
    assert time.monotonic() - started >= 0.3
    assert (outcome.state, outcome.reason) == (State.TERMINATED, "timeout")
    assert h.client.final == final(State.TERMINATED, KILLED.exit_code, "timeout")


def test_an_oom_killed_program_ends_with_memory_limit(make_run):
    h = make_run()
    h.run.start(b"")
    h.sandbox.exit(137, oom_killed=True)
    outcome = h.ended()
    assert (outcome.state, outcome.reason) == (State.TERMINATED, "memory_limit")
    assert h.client.final == final(State.TERMINATED, 137, "memory_limit")


# --- failures -------------------------------------------------------------------------------


def test_a_client_that_goes_away_ends_the_run(make_run):
    client = FakeClient(fail_on=lambda m: m["type"] == "stdout")
    h = make_run(client=client)
    h.run.start(b"")
    h.sandbox.stdout("first\n")
    outcome = h.ended()
    assert (outcome.state, outcome.reason) == (State.TERMINATED, "client_disconnected")
    assert h.sandbox.kills == 1
    assert h.released == 1
    # Once a send failed nothing more is sent to that client.
    assert client.messages == [RUNNING]
    assert client.emit_attempts == 2


def test_a_client_gone_before_running_is_sent_ends_the_run(make_run):
    h = make_run(client=FakeClient(fail_on=lambda m: True))
    h.run.start(b"")
    assert h.ended().reason == "client_disconnected"
    assert h.client.emit_attempts == 1


def test_an_end_asked_for_elsewhere_is_reported(make_run):
    asked: list[Reason] = []
    h = make_run(external_reason=lambda: asked[0] if asked else None)
    h.run.start(b"")
    h.sandbox.stdout("running\n")
    # Another worker handled DELETE: it left word, then removed the container.
    asked.append(Reason.KILLED)
    h.sandbox.remove()
    outcome = h.ended()
    assert (outcome.state, outcome.reason) == (State.TERMINATED, "killed")
    assert h.client.final == final(State.TERMINATED, KILLED.exit_code, "killed")


def test_an_end_asked_for_elsewhere_explains_a_lost_sandbox(make_run):
    asked: list[Reason] = []
    h = make_run(external_reason=lambda: asked[0] if asked else None)
    h.run.start(b"")
    asked.append(Reason.KILLED)
    h.sandbox.fail(ExecutorError("container vanished"))
    assert h.ended().reason == "killed"


def test_a_runtime_failure_during_output_is_an_internal_error(make_run):
    h = make_run()
    h.run.start(b"")
    h.sandbox.stdout("partial\n")
    h.sandbox.fail(ExecutorError("docker went away"))
    outcome = h.ended()
    assert (outcome.state, outcome.reason) == (State.TERMINATED, "internal_error")
    assert h.client.messages[:2] == [RUNNING, {"type": "stdout", "data": "partial\n"}]
    assert h.client.final["state"] == State.TERMINATED
    assert h.client.final["reason"] == "internal_error"
    assert h.client.closed.is_set()
    assert h.released == 1


def test_no_exit_status_is_an_internal_error_without_exit_code(make_run):
    h = make_run()
    h.sandbox.wait_error = ExecutorError("docker went away")
    h.run.start(b"")
    h.sandbox.exit(0)
    h.ended()
    assert h.client.final == final(State.TERMINATED, None, "internal_error")


def test_a_sandbox_that_cannot_start_raises_and_starts_nothing(make_run):
    h = make_run()
    h.sandbox.start_error = ExecutorError("no such image")
    with pytest.raises(ExecutorError):
        h.run.start(b"")
    assert h.client.messages == []
    assert not h.run.finished


# --- the compile stage and the terminal ------------------------------------------------------


def test_a_compiled_program_runs_under_the_run_limits_after_the_compiler(make_run):
    h = make_run(compiles=True)
    h.run.start(b"int main(){}")
    h.sandbox.stderr("warning: unused\n")
    # Input typed while compiling waits for the program.
    h.run.handle(Input(b"early\n"))
    assert h.sandbox.writes == []
    h.sandbox.compiled(0)
    assert h.sandbox.went.wait(END)
    # Released once the program may start: the program reads it.
    assert h.sandbox.wait_writes(1) == [b"early\n"]
    h.sandbox.stdout("ran\n")
    h.sandbox.exit(0)
    outcome = h.ended()
    assert h.client.messages == [
        COMPILING,
        {"type": "stderr", "data": "warning: unused\n"},
        RUNNING,
        {"type": "stdout", "data": "ran\n"},
        final(State.FINISHED, 0, "exited"),
    ]
    assert h.sandbox.limits == [RUN_LIMITS]
    assert outcome.reason == "exited"


def test_a_failed_compile_finishes_with_compile_error_and_the_compilers_exit_code(make_run):
    h = make_run(compiles=True)
    h.run.start(b"int main(){")
    h.sandbox.stderr("error: expected '}'\n")
    h.sandbox.compiled(1)
    h.sandbox.exit(1)
    outcome = h.ended()
    assert h.client.messages[-1] == final(State.FINISHED, 1, "compile_error")
    assert RUNNING not in h.client.messages and not h.sandbox.went.is_set()
    assert (outcome.state, outcome.reason) == (State.FINISHED, "compile_error")


def test_a_compiled_program_never_goes_unless_the_run_limits_are_in_force(make_run):
    h = make_run(compiles=True)
    h.sandbox.limits_error = ExecutorError("Docker could not change the sandbox's limits")
    h.run.start(b"int main(){}")
    h.sandbox.compiled(0)
    outcome = h.ended()
    assert not h.sandbox.went.is_set()
    assert RUNNING not in h.client.messages
    assert (outcome.state, outcome.reason) == (State.TERMINATED, "internal_error")


def test_a_compile_that_takes_too_long_is_ended_with_timeout(make_run):
    h = make_run(compiles=True, compile_timeout=0.2, idle_timeout=0.05)
    h.run.start(b"")
    outcome = h.ended()
    # The compile stage has its own timeout; the idle timeout does not apply to it.
    assert (outcome.state, outcome.reason) == (State.TERMINATED, "timeout")


def test_a_tty_holds_input_until_its_terminal_is_ready(make_run):
    h = make_run(tty=True)
    h.run.start(b"")
    h.run.handle(Input(b"typed early\r"))
    assert h.sandbox.writes == []
    h.sandbox.started_terminal()
    h.sandbox.stdout("prompt: ")
    assert h.sandbox.wait_writes(1) == [b"typed early\r"]
    h.run.handle(Input(b"later\r"))
    assert h.sandbox.wait_writes(2) == [b"typed early\r", b"later\r"]


# --- a program that does not read, a kill that does not take, a client that floods ----------


def test_output_and_timers_go_on_while_the_program_reads_no_input(make_run):
    h = make_run(run_timeout=0.5)
    h.run.start(b"")
    h.sandbox.reading.clear()  # its stdin pipe is full
    h.run.handle(Input(b"x" * 1000))
    h.run.handle(Input(b"y" * 1000))
    h.sandbox.stdout("still printing\n")
    outcome = h.ended()
    assert outcome.reason == "timeout"
    assert {"type": "stdout", "data": "still printing\n"} in h.client.messages
    assert h.sandbox.writes == []  # never read; lost with the sandbox


def test_input_past_the_limit_is_refused_and_a_kill_goes_ahead_of_it(make_run):
    h = make_run(input_limit=2500)
    h.run.start(b"")
    h.sandbox.reading.clear()
    h.run.handle(Input(b"x" * 1000))
    h.run.handle(Input(b"y" * 1000))
    with pytest.raises(EngineError) as refused:
        h.run.handle(Input(b"z" * 1000))
    assert refused.value.kind is Kind.INPUT_LIMIT
    assert "not reading" in refused.value.message
    started = time.monotonic()
    h.run.handle(Kill())
    assert h.ended().reason == "killed"
    assert time.monotonic() - started < 1.0


def test_input_held_while_compiling_is_bounded_too(make_run):
    h = make_run(compiles=True, input_limit=1000)
    h.run.start(b"")
    h.run.handle(Input(b"x" * 600))
    with pytest.raises(EngineError):
        h.run.handle(Input(b"x" * 600))
    h.run.handle(Kill())
    h.ended()


def test_a_kill_that_does_not_take_cuts_the_sandbox_off_after_its_grace(make_run):
    h = make_run(kill_grace=0.2)
    h.run.start(b"")
    h.sandbox.kill_ignored = True
    started = time.monotonic()
    h.run.handle(Kill())
    outcome = h.ended()
    assert outcome.reason == "killed"
    assert h.sandbox.kills == 1 and h.sandbox.removed.is_set()
    assert 0.2 <= time.monotonic() - started < 2.0


def test_no_run_outlives_its_hard_deadline(make_run):
    # Its kill never takes and its kill grace is long, but run timeout + grace is short.
    h = make_run(idle_timeout=60, run_timeout=0.3, deadline_grace=0.1, kill_grace=60)
    h.run.start(b"")
    h.sandbox.kill_ignored = True
    started = time.monotonic()
    outcome = h.ended()
    assert outcome.reason == "timeout"
    assert h.sandbox.removed.is_set()
    assert time.monotonic() - started < 3


def test_signals_past_a_few_a_second_are_refused(make_run):
    h = make_run()
    h.run.start(b"")
    for _ in range(5):
        h.run.handle(Signal("SIGUSR1"))
    with pytest.raises(ProtocolError, match="too many signals"):
        h.run.handle(Signal("SIGUSR1"))
    assert h.sandbox.signals == ["SIGUSR1"] * 5
    h.run.handle(Kill())  # a kill is no signal: never refused
    assert h.ended().reason == "killed"


def test_a_resize_storm_is_coalesced_into_its_last_size(make_run):
    h = make_run(tty=True)
    h.run.start(b"")
    for cols in range(20, 220):
        h.run.handle(Resize(cols, 30))
    deadline = time.monotonic() + END
    while (not h.sandbox.sizes or h.sandbox.sizes[-1] != (219, 30)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert h.sandbox.sizes[0] == (20, 30) and h.sandbox.sizes[-1] == (219, 30)
    assert len(h.sandbox.sizes) <= 5
    h.run.handle(Kill())
    h.ended()


# --- a person thinking at a prompt ----------------------------------------------------------


def test_a_program_waiting_at_a_prompt_gets_the_input_timeout_instead_of_the_idle_one(make_run):
    h = make_run(idle_timeout=0.2, run_timeout=20)
    h.run.start(b"")
    h.sandbox.waiting = True
    assert not h.run.wait(0.6), "a program waiting for its user was ended by the idle timeout"
    h.run.handle(Kill())
    assert h.ended().reason == "killed"


def test_the_input_timeout_ends_a_prompt_nobody_answers(make_run):
    h = make_run(idle_timeout=0.1, run_timeout=20, input_timeout=0.4)
    h.run.start(b"")
    h.sandbox.waiting = True
    started = time.monotonic()
    outcome = h.ended()
    assert outcome.reason == "input_timeout"
    assert 0.3 <= time.monotonic() - started < 3


def test_a_program_that_stops_waiting_and_goes_quiet_gets_the_idle_timeout_again(make_run):
    h = make_run(idle_timeout=0.2, run_timeout=20)
    h.run.start(b"")
    h.sandbox.waiting = True
    assert not h.run.wait(0.3)
    h.sandbox.waiting = False  # it is computing now, silently
    assert h.ended().reason == "idle_timeout"


def test_a_program_killed_by_a_signal_is_named_so(make_run):
    h = make_run()
    h.run.start(b"")
    h.sandbox.exit(139)
    assert h.ended().reason == "exited"
    assert h.client.final["signal"] == "SIGSEGV"


def test_an_end_the_engine_asked_for_reads_the_same_when_the_status_is_lost(make_run):
    # DELETE through another worker removes the container: its status can no longer be read.
    h = make_run(external_reason=lambda: Reason.KILLED)
    h.run.start(b"")
    h.sandbox.wait_error = ExecutorError("no such container")
    h.sandbox.remove()
    h.ended()
    assert h.client.final == final(State.TERMINATED, 137, "killed")
    assert h.client.final["signal"] == "SIGKILL"


def test_what_the_program_wrote_before_a_kill_took_still_reaches_the_client(make_run):
    h = make_run()
    h.run.start(b"")
    h.sandbox.kill_ignored = True  # the kill is under way; the program's last write is in flight
    h.run.handle(Kill())
    h.sandbox.stdout("\n")
    h.sandbox.exit(137)
    h.ended()
    assert {"type": "stdout", "data": "\n"} in h.client.messages


def test_the_programs_usage_reaches_the_final_state_and_its_record(make_run):
    from sandbox_engine.executor import ProgramEnd, Usage

    h = make_run()
    h.run.start(b"code")
    h.sandbox._chunks.put(ProgramEnd(0, 0, Usage(12.5, 40.0, 9 << 20)))
    h.sandbox.exit(0)
    assert h.run.wait(END)
    assert h.client.final["usage"] == {"cpuTimeMs": 12.5, "wallTimeMs": 40.0, "memoryPeakBytes": 9 << 20}
    assert h.run.outcome.usage == Usage(12.5, 40.0, 9 << 20)


# --- the end, learned in-band -----------------------------------------------------------------


def test_an_end_reported_in_band_is_final_before_the_sandbox_stops(make_run):
    h = make_run()
    h.run.start(b"")
    h.sandbox.stdout("done\n")
    h.sandbox.ends_in_band(3)
    outcome = h.ended()
    assert (outcome.exit_code, outcome.reason, outcome.usage.cpu_time_ms) == (3, Reason.EXITED, 1.5)
    assert h.client.final == {**final("FINISHED", 3, "exited"), "usage": outcome.usage.public()}
    # Told first, then removed: the sandbox had not stopped when the client heard of its end.
    events = h.client.events
    assert events.index("recorded") < events.index(h.client.final) < events.index("released")
    assert h.sandbox.removed.is_set()


def test_a_sigkill_reported_in_band_asks_the_runtime_whether_it_was_the_memory_limit(make_run):
    h = make_run()
    h.run.start(b"")
    h.sandbox.ends_in_band(signal=9)
    h.sandbox.exit(137, oom_killed=True)
    outcome = h.ended()
    assert (outcome.exit_code, outcome.reason) == (137, Reason.MEMORY_LIMIT)
