"""The executor interface: a place where one program runs, in our own terms.

The engine and sessions speak only this; `docker_executor` is today's implementation, and
another (Kubernetes, Firecracker) would implement the same two classes.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from .config import IMAGE_ID

# The unprivileged user every image ends as. Sandboxes run as host uids of their own instead (see
# uids); this one is for running an image by hand, as the benchmark's baselines do.
SANDBOX_USER = f"{IMAGE_ID}:{IMAGE_ID}"
# The group a compile stage runs in, and no program: compile-time code (Template Haskell, a
# compiler plugin) is then another principal than the launcher waiting beside it, whose memory,
# environment, stdin and stdout it cannot reach (see launch). No uid of the range is this number.
COMPILE_GID = IMAGE_ID


class Stream(enum.Enum):
    STDOUT = "stdout"
    STDERR = "stderr"


@dataclass(frozen=True)
class Limits:
    memory: int
    cpus: float
    pids: int
    disk: int


@dataclass(frozen=True)
class Terminal:
    cols: int = 80
    rows: int = 24


@dataclass(frozen=True)
class SandboxSpec:
    """Everything needed to create one sandbox: for a session, or (session_id None) for the pool."""

    session_id: str | None
    language: str
    image: str
    source_file: str
    command: tuple[str, ...]
    env: dict[str, str]
    limits: Limits
    # With a compile stage the sandbox starts under compile_limits, its executor runs the compile
    # command beside the launcher (see launch.compile_command) and reports its exit code, and the
    # program waits for go() before it runs under `limits`.
    compile: tuple[str, ...] | None = None
    compile_limits: Limits | None = None
    # A pseudo-terminal for the program, or plain pipes.
    tty: bool = False
    launcher: str = "sh"


@dataclass(frozen=True)
class SandboxRef:
    """A sandbox as its executor made it: enough for any worker to claim and drive it.

    Kept with the session's record, so that the worker serving the WebSocket need not ask the
    runtime about the sandbox before attaching to it.
    """

    # The runtime's own handle for the sandbox (a container id, a pod name).
    id: str
    language: str
    tty: bool = False
    # The compile stage's command (SandboxSpec.compile), which its executor runs; None: none.
    compile: tuple[str, ...] | None = None
    # Started already: a warm pool's sandbox, its launcher waiting for the program.
    running: bool = False
    # The host uid its programs run as, its own while it exists (see uids); None if the runtime
    # does not say.
    uid: int | None = None
    # The runtime's name a warm sandbox waits under (Docker: the pool's container name); a session
    # takes it in the state store (see pool_members), and its claim renames it from this name.
    name: str | None = None
    # Its launcher ends a single run's separate stderr with an END mark (launch.ends_stderr);
    # else the output is complete once stderr stays quiet after the EXIT mark.
    ends_stderr: bool = False
    # Its compile stage started already, waiting for the code (a warm pool's; see
    # launch.compile_waiter): the nonce of its EXIT mark, which comes on the attach stream. None: the
    # executor starts the compile stage when the code is in place.
    compile_nonce: str | None = None

    def __post_init__(self) -> None:
        # As read back from JSON, the command is a list.
        if self.compile is not None:
            object.__setattr__(self, "compile", tuple(self.compile))

    @property
    def compiles(self) -> bool:
        return self.compile is not None


@dataclass(frozen=True)
class SandboxInfo:
    """What the executor knows of a sandbox now, from the runtime (not from any one worker)."""

    ref: SandboxRef
    # The runtime's name for it as listed; it changes as the sandbox is taken and claimed, so a
    # take made from this name fails once another made one (Docker: the container's name).
    name: str
    # The session it serves; "" for a pool's sandbox nobody took yet.
    session_id: str
    created_at: float
    claimed: bool
    running: bool
    exited: bool
    # A warm pool's sandbox, started and waiting for a session's program.
    pooled: bool = False
    # Who claimed it, as given to claim(); None when unclaimed or half way through a claim.
    owner: str | None = None

    @property
    def language(self) -> str:
        return self.ref.language

    @property
    def tty(self) -> bool:
        return self.ref.tty

    @property
    def waiting(self) -> bool:
        """A pool's sandbox a session can take now: running, and not half taken."""
        return self.pooled and self.running and not self.claimed


@dataclass(frozen=True)
class Started:
    """A tty sandbox's terminal is ready for the program's input."""


@dataclass(frozen=True)
class Usage:
    """What a program used, by the kernel's accounting of its process (see launch's EXIT mark)."""

    cpu_time_ms: float
    wall_time_ms: float
    memory_peak_bytes: int

    def public(self) -> dict:
        return {
            "cpuTimeMs": round(self.cpu_time_ms, 3),
            "wallTimeMs": round(self.wall_time_ms, 3),
            "memoryPeakBytes": self.memory_peak_bytes,
        }


@dataclass(frozen=True)
class CompileResult:
    """The compile stage's end, reported in order with the output."""

    exit_code: int
    # What the compiler used, as its launcher measured it; None if it could not say.
    usage: Usage | None = None


@dataclass(frozen=True)
class ProgramEnd:
    """The program (in a batch, one test's run of it) has ended, as its launcher saw it; in a
    batch, its stdout is complete here (and its stderr at the StderrEnd that follows)."""

    # Its exit status, None when a signal ended it.
    exit_code: int | None
    # The signal's number that ended it, 0 for none.
    signal: int
    usage: Usage
    # The launcher killed it at its frame's timeout.
    timed_out: bool = False
    # The launcher killed it when asked to (Sandbox.abort).
    aborted: bool = False


@dataclass(frozen=True)
class StderrEnd:
    """In a batch with stderr of its own, the current test's stderr is complete."""


# What a sandbox's output() yields: the program's bytes, and its stages' ends between them.
Output = tuple[Stream, bytes] | Started | CompileResult | ProgramEnd | StderrEnd


@dataclass(frozen=True)
class ExitStatus:
    exit_code: int | None
    oom_killed: bool = False
    # It had ended before the program was handed to it (a warm sandbox that died while waiting):
    # the exit is not the program's.
    ended_before: bool = False


class ExecutorError(Exception):
    """The runtime behind the executor failed or did not answer."""


class RuntimeUnavailable(ExecutorError):
    """The runtime is down, or the image a language needs is missing."""


class SandboxNotFound(ExecutorError):
    pass


class AlreadyClaimed(ExecutorError):
    """Another attachment (maybe in another worker) claimed this sandbox first."""


class Sandbox(abc.ABC):
    """One claimed sandbox: its streams, its input and its end. Owned by one session run.

    With a compile stage, output() yields the compiler's output, then a CompileResult once the
    compiler is done; the program waits until go() is called (after set_limits() has applied
    the run's limits), and never starts without it. A tty sandbox yields Started once its
    terminal may take input.
    """

    session_id: str
    tty: bool = False
    compiles: bool = False

    @abc.abstractmethod
    def start(
        self,
        code: bytes,
        terminal: Terminal | None = None,
        merge_stderr: bool = False,
        files: Sequence[tuple[str, bytes]] = (),
        tests: bool = False,
    ) -> None:
        """Connect the streams, start the sandbox (unless pooled: it runs already), and hand it
        the program: no early output can be lost. `terminal` sizes a tty sandbox's terminal;
        `merge_stderr` gives the program one pipe for stdout and stderr, so their order holds;
        `files` go beside the program. With `tests` the program runs once per test() instead of
        once on the sandbox's stdin, each run ending with a ProgramEnd (and StderrEnd)."""

    def test(self, stdin: bytes, timeout_ms: int, args: Sequence[str] = ()) -> None:
        """In a `tests` sandbox, run the program once more: a fresh process with this stdin."""
        raise NotImplementedError

    def abort(self) -> None:
        """In a `tests` sandbox, kill the current test's run (its ProgramEnd says aborted)."""
        raise NotImplementedError

    @abc.abstractmethod
    def output(self) -> Iterator[Output]:
        """Output chunks in the order the program wrote them; ends when both streams close."""

    @abc.abstractmethod
    def set_limits(self, limits: Limits) -> None:
        """Change the running sandbox's limits (from the compile stage's to the run's)."""

    @abc.abstractmethod
    def go(self) -> None:
        """Let the compiled program start."""

    @abc.abstractmethod
    def signal(self, name: str) -> None:
        """Send a signal (SIGINT, SIGTERM, ...) to the program's whole process group."""

    @abc.abstractmethod
    def resize(self, cols: int, rows: int) -> None:
        """Change the terminal's size; the program gets SIGWINCH. Only for tty sandboxes."""

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Send bytes to the program's stdin."""

    @abc.abstractmethod
    def close_stdin(self) -> None:
        """Give the program EOF on stdin."""

    @abc.abstractmethod
    def kill(self) -> None:
        """Stop the program now. Safe to call more than once and after it exited."""

    @abc.abstractmethod
    def wait(self, timeout: float) -> ExitStatus:
        """Wait for the program to exit and say how it ended."""

    @abc.abstractmethod
    def remove(self) -> None:
        """Release the streams and remove the sandbox. Safe to call more than once."""

    def waiting_for_input(self) -> bool:
        """Whether the program sleeps waiting for its stdin now (at a prompt); False when the
        runtime cannot tell."""
        return False


# Whether a claim's owner still drives the sandbox: (owner as given to claim(), session id).
OwnerAlive = Callable[[str, str], bool]


class Executor(abc.ABC):
    @abc.abstractmethod
    def create(self, spec: SandboxSpec) -> SandboxRef:
        """Create the sandbox, hardened and limited; start it only if it is for the pool, and then
        return once its launcher is ready for a program (a tty's terminal is raw)."""

    @abc.abstractmethod
    def claim(self, session_id: str, owner: str, ref: SandboxRef | None = None) -> Sandbox:
        """Atomically take the session's sandbox for one attachment; AlreadyClaimed for every
        later one, SandboxNotFound when there is none. With `ref` the runtime is not asked about
        it, and a warm sandbox taken for the session (ref.name) is found under its pool's name."""

    @abc.abstractmethod
    def sandbox(self, ref: SandboxRef, session_id: str) -> Sandbox:
        """A warm sandbox claimed for the session in the state store (see claims), to drive at
        once: no runtime call."""

    @abc.abstractmethod
    def name_claim(self, session_id: str, owner: str, ref: SandboxRef, claimed_at: float) -> bool:
        """Make the runtime's name of a sandbox claimed in the state store say whose it is, as
        claim() would have (Docker: rename it from its pool's name). False when it had stopped
        before `claimed_at` (time.time()): a warm sandbox that died while it waited, whose
        session cannot run. (One that stopped since, or is gone, ran its program, or failed to.)"""

    @abc.abstractmethod
    def list(self) -> list[SandboxInfo]:
        """Every sandbox of this server's instance."""

    @abc.abstractmethod
    def orphaned(self, info: SandboxInfo, alive: OwnerAlive, now: float) -> bool:
        """Whether nobody will ever end this sandbox: a pool's that died or was left half taken,
        or a claimed one whose owner is not alive. An unclaimed session's sandbox is never an
        orphan: when it expires is the engine's business."""

    @abc.abstractmethod
    def remove_sandbox(self, info: SandboxInfo) -> None:
        """Remove one sandbox as listed, pooled or not. Missing is fine."""

    @abc.abstractmethod
    def remove(self, session_id: str, ref: SandboxRef | None = None) -> None:
        """Remove a session's sandbox, claimed or not, running or not. Missing is fine. With
        `ref`, the one it refers to, whatever its name."""

    @abc.abstractmethod
    def check(self, images: list[str]) -> str | None:
        """None when the runtime answers and every image exists; else why not."""

    def reclaim(self) -> None:  # noqa: B027 - optional for executors that lease nothing
        """Free what sandboxes that no longer exist still hold (the Docker executor: their uids),
        when whoever removed them could not. Idempotent, like the reaper that calls it."""

    def image_labels(self, image: str) -> dict[str, str]:
        """The labels of a language's image, where the build recorded its version."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional for executors holding no connections
        """Release connections to the runtime."""
