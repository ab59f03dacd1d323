"""A scripted implementation of our executor interface: sandboxes without Docker.

A test feeds a FakeSandbox's output over time (`stdout`, `stderr`), then ends the program
(`exit`, `fail`); every write, close_stdin, kill and remove is recorded for the test to check.
FakeRunner stands for the batch runs (batch.Runner) the same way: scripted results, recorded requests.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator

from sandbox_engine.batch import RunRequest, RunResult, RunState, RunView, Stage, Status, Usage
from sandbox_engine.errors import EngineError, Kind
from sandbox_engine.executor import (
    AlreadyClaimed,
    CompileResult,
    Executor,
    ExecutorError,
    ExitStatus,
    Limits,
    OwnerAlive,
    ProgramEnd,
    Sandbox,
    SandboxInfo,
    SandboxNotFound,
    SandboxRef,
    SandboxSpec,
    Started,
    Stream,
    Terminal,
)
from sandbox_engine.keys import Key

# How a killed or removed program reports its end, as Docker reports SIGKILL.
KILLED = ExitStatus(137)
# A test that forgets to end its program must not leave a pump thread blocked forever.
STALL = 10.0

_END = object()


class FakeSandbox(Sandbox):
    def __init__(
        self, session_id: str, executor: FakeExecutor | None = None, tty: bool = False, compiles: bool = False
    ) -> None:
        self.session_id = session_id
        self.tty = tty
        self.compiles = compiles
        self._executor = executor
        self._chunks: queue.Queue = queue.Queue()
        self._ended = threading.Event()
        self._status = ExitStatus(0)
        self._lock = threading.Lock()
        self.writes: list[bytes] = []
        self.stdin_closed = False
        self._stdin = threading.Condition()
        # Cleared: the program reads nothing, so a write waits, as on a full pipe, until it is
        # set again or the sandbox is removed (which closes its streams).
        self.reading = threading.Event()
        self.reading.set()
        self.started = False
        self.kills = 0
        self.removed = threading.Event()
        self.signals: list[str] = []
        self.sizes: list[tuple[int, int]] = []
        self.limits: list[Limits] = []
        # Set when go() lets the compiled program start; writes before it are the launcher's.
        self.went = threading.Event()
        # What waiting_for_input() answers: the program sleeps at a prompt.
        self.waiting = False
        # Set: kill() is taken but changes nothing, as a kill Docker cannot carry out.
        self.kill_ignored = False
        # A pool's sandbox runs before anyone attaches to it.
        self.running_before_attach = False
        # Scripted failures: start() raises start_error, set_limits() limits_error, wait()
        # wait_error, remove() remove_error.
        self.start_error: ExecutorError | None = None
        self.limits_error: ExecutorError | None = None
        self.wait_error: ExecutorError | None = None
        self.remove_error: ExecutorError | None = None
        # Raised by signal(): any exception, as a bug below the WebSocket handler would raise.
        self.signal_error: Exception | None = None

    # --- the test's side ---------------------------------------------------------------
    def stdout(self, data: bytes | str) -> None:
        self._chunks.put((Stream.STDOUT, _bytes(data)))

    def stderr(self, data: bytes | str) -> None:
        self._chunks.put((Stream.STDERR, _bytes(data)))

    def exit(self, exit_code: int | None = 0, oom_killed: bool = False) -> None:
        """The program ends on its own: its streams close after what was already written."""
        self._end(ExitStatus(exit_code, oom_killed))

    def ends_in_band(self, exit_code: int = 0, signal: int = 0) -> None:
        """The launcher reports the program's end (its EXIT mark) and the output ends there; the
        sandbox itself runs on until it is removed, as a container takes a while to stop."""
        self._chunks.put(ProgramEnd(None if signal else exit_code, signal, Usage(1.5, 2.5, 4096)))
        self._chunks.put(_END)

    def started_terminal(self) -> None:
        """A tty sandbox's terminal is ready for input."""
        self._chunks.put(Started())

    def compiled(self, exit_code: int = 0) -> None:
        """The compile stage ends with the compiler's exit code."""
        self._chunks.put(CompileResult(exit_code))

    def fail(self, error: ExecutorError) -> None:
        """The runtime breaks while the output is read."""
        self._chunks.put(error)

    @property
    def written(self) -> bytes:
        return b"".join(self.writes)

    # --- the interface -----------------------------------------------------------------
    def start(
        self,
        code: bytes = b"",
        terminal: Terminal | None = None,
        merge_stderr: bool = False,
        files=(),
        tests: bool = False,
    ) -> None:
        if self.start_error is not None:
            raise self.start_error
        self.code = code
        self.files = tuple(files)
        self.tests = tests
        self.merge_stderr = merge_stderr
        self.terminal = terminal
        self.started = True

    def output(self) -> Iterator[tuple[Stream, bytes] | CompileResult]:
        while True:
            try:
                item = self._chunks.get(timeout=STALL)
            except queue.Empty:
                raise ExecutorError("fake sandbox: the test never ended the program") from None
            if item is _END:
                return
            if isinstance(item, ExecutorError):
                raise item
            yield item

    def write(self, data: bytes) -> None:
        while not self.reading.wait(0.01):
            if self.removed.is_set():
                return  # the streams are closed: the write fails, the input is lost
        with self._stdin:
            self.writes.append(data)
            self._stdin.notify_all()

    def close_stdin(self) -> None:
        with self._stdin:
            self.stdin_closed = True
            self._stdin.notify_all()

    def waiting_for_input(self) -> bool:
        return self.waiting

    def wait_writes(self, count: int, timeout: float = STALL) -> list[bytes]:
        """The writes, once there are at least `count` (stdin's writer is a thread of its own)."""
        with self._stdin:
            self._stdin.wait_for(lambda: len(self.writes) >= count, timeout)
            return list(self.writes)

    def wait_stdin_closed(self, timeout: float = STALL) -> bool:
        with self._stdin:
            return self._stdin.wait_for(lambda: self.stdin_closed, timeout)

    def set_limits(self, limits: Limits) -> None:
        if self.limits_error is not None:
            raise self.limits_error
        self.limits.append(limits)

    def go(self) -> None:
        self.went.set()

    def signal(self, name: str) -> None:
        if self.signal_error is not None:
            raise self.signal_error
        self.signals.append(name)

    def resize(self, cols: int, rows: int) -> None:
        self.sizes.append((cols, rows))

    def kill(self) -> None:
        self.kills += 1
        if not self.kill_ignored:
            self._end(KILLED)

    def wait(self, timeout: float) -> ExitStatus:
        if self.wait_error is not None:
            raise self.wait_error
        if not self._ended.wait(timeout):
            raise ExecutorError("fake sandbox: still running")
        return self._status

    def remove(self) -> None:
        if self.remove_error is not None:
            raise self.remove_error
        self._end(KILLED)
        self.removed.set()
        if self._executor is not None:
            self._executor.forget(self.session_id)

    def _end(self, status: ExitStatus) -> None:
        with self._lock:
            if self._ended.is_set():
                return
            self._status = status
            self._ended.set()
            self._chunks.put(_END)


class FakeExecutor(Executor):
    """Sandboxes by session id; a warm pool's are kept under "pool-<n>" until a session takes one.
    With `names_like_pools`, as Docker's executor does, a session's own sandbox is made under such
    a name too (not started), and its reference names it (see Claims.made)."""

    def __init__(self, names_like_pools: bool = False) -> None:
        self.names_like_pools = names_like_pools
        self.sandboxes: dict[str, FakeSandbox] = {}
        self.specs: dict[str, SandboxSpec] = {}
        self.refs: dict[str, SandboxRef] = {}
        self.owners: dict[str, str] = {}
        self.created_at: dict[str, float] = {}
        # Image labels, as a build would record versions in them.
        self.labels: dict[str, dict[str, str]] = {}
        self.removed: list[str] = []
        # Claims made in the state store whose runtime name followed: (session, owner).
        self.named: list[tuple[str, str]] = []
        # Raised by every runtime call while set, as a daemon that went away.
        self.error: ExecutorError | None = None
        # What check() answers: None when ready.
        self.problem: str | None = None
        # Called at the start of list(), before anything is read: a test makes something happen
        # between a caller's earlier view and this listing.
        self.before_list: Callable[[], None] | None = None
        # Each time the executor was asked to free what removed sandboxes held: the sandboxes
        # there were then.
        self.reclaims: list[list[str]] = []
        self._lock = threading.Lock()
        self._pooled = 0

    def create(self, spec: SandboxSpec) -> SandboxRef:
        self._fail()
        with self._lock:
            key = spec.session_id
            if key is None or self.names_like_pools:
                self._pooled += 1
                key = f"pool-{self._pooled}"
            sandbox = FakeSandbox(key, self, tty=spec.tty, compiles=spec.compile is not None)
            # A pool's sandbox is started at once, its launcher waiting for a program.
            sandbox.running_before_attach = spec.session_id is None
            self.specs[key] = spec
            self.sandboxes[key] = sandbox
            self.created_at[key] = time.time()
            ref = SandboxRef(
                id=f"fake-{key}",
                language=spec.language,
                tty=spec.tty,
                compile=spec.compile,
                running=spec.session_id is None,
                name=key if spec.session_id is None or self.names_like_pools else None,
            )
            self.refs[key] = ref
            return ref

    def claim(self, session_id: str, owner: str, ref: SandboxRef | None = None) -> FakeSandbox:
        self._fail()
        with self._lock:
            if ref is not None and ref.name in self.sandboxes:
                # A warm sandbox taken for the session: claimed from its pool's name (one rename).
                self._rekey(ref.name, session_id)
                self.owners[session_id] = owner
                return self.sandboxes[session_id]
            if session_id not in self.sandboxes:
                raise SandboxNotFound(session_id)
            if session_id in self.owners:
                raise AlreadyClaimed(session_id)
            assert ref is None or ref == self.refs[session_id], "claimed with another sandbox's ref"
            self.owners[session_id] = owner
            return self.sandboxes[session_id]

    def sandbox(self, ref: SandboxRef, session_id: str) -> FakeSandbox:
        # Still listed under its pool's name until name_claim, as in Docker.
        with self._lock:
            sandbox = self.sandboxes.get(ref.name or "") or self.sandboxes[session_id]
            sandbox.session_id = session_id
            return sandbox

    def name_claim(self, session_id: str, owner: str, ref: SandboxRef, claimed_at: float) -> bool:
        self._fail()
        with self._lock:
            if ref.name in self.sandboxes:
                self._rekey(ref.name, session_id)
                self.owners[session_id] = owner
            self.named.append((session_id, owner))
            sandbox = self.sandboxes.get(session_id)
            return sandbox is not None and not (sandbox._ended.is_set() and not sandbox.started)

    def _rekey(self, old: str, session_id: str) -> None:
        sandbox = self.sandboxes.pop(old)
        sandbox.session_id = session_id
        self.sandboxes[session_id] = sandbox
        for table in (self.specs, self.refs, self.created_at):
            table[session_id] = table.pop(old)

    def list(self) -> list[SandboxInfo]:
        self._fail()
        if self.before_list is not None:
            self.before_list()
        with self._lock:
            return [self._info(key) for key in self.sandboxes]

    def orphaned(self, info: SandboxInfo, alive: OwnerAlive, now: float) -> bool:
        if info.pooled:
            return info.exited
        return info.owner is not None and not alive(info.owner, info.session_id)

    def remove(self, session_id: str, ref: SandboxRef | None = None) -> None:
        self._fail()
        sandbox = self.sandboxes.get(session_id) or (self.sandboxes.get(ref.name or "") if ref else None)
        if sandbox is not None:
            sandbox.remove()

    def check(self, images: list[str]) -> str | None:
        return self.problem

    def reclaim(self) -> None:
        self._fail()
        self.reclaims.append(list(self.sandboxes))

    def image_labels(self, image: str) -> dict[str, str]:
        return self.labels.get(image, {})

    def remove_sandbox(self, info: SandboxInfo) -> None:
        self.remove(info.name)

    def forget(self, key: str) -> None:
        with self._lock:
            sandbox = self.sandboxes.get(key)
            if sandbox is None:
                # Claimed in the state store and removed before its runtime name followed.
                key = next((k for k, v in self.sandboxes.items() if v.session_id == key), key)
            if (popped := self.sandboxes.pop(key, None)) is not None:
                self.removed.append(popped.session_id)

    def _info(self, key: str) -> SandboxInfo:
        sandbox = self.sandboxes[key]
        pooled = key.startswith("pool-")
        running = (sandbox.started or sandbox.running_before_attach) and not sandbox._ended.is_set()
        return SandboxInfo(
            ref=self.refs[key],
            name=key,
            session_id="" if pooled else key,
            created_at=self.created_at[key],
            claimed=key in self.owners,
            running=running,
            exited=sandbox._ended.is_set(),
            pooled=pooled,
            owner=self.owners.get(key),
        )

    def _fail(self) -> None:
        if self.error is not None:
            raise self.error


def _bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


class FakeClient:
    """The WebSocket side of a run: records what a user would receive, in order.

    `fail_on` makes emit raise for matching messages, as a send to a client that went away.
    """

    def __init__(self, fail_on: Callable[[dict], bool] | None = None) -> None:
        self.messages: list[dict] = []
        # Everything that happened at the client's edge, messages and the close, in order.
        self.events: list[object] = []
        self.closed = threading.Event()
        self._fail_on = fail_on
        self.emit_attempts = 0
        # The seq of each message received through a hub, in order (messages leave it out).
        self.seqs: list[int | None] = []
        self.close_codes: list[int] = []
        self.aborted = False

    def emit(self, message: dict) -> None:
        self.emit_attempts += 1
        if self._fail_on is not None and self._fail_on(message):
            raise ConnectionError("the client went away")
        self.messages.append(message)
        self.events.append(message)

    def send_text(self, text: str) -> None:
        """As a hub sends (see hub.Subscriber): JSON text carrying its seq."""
        message = json.loads(text)
        seq = message.pop("seq", None)
        self.emit(message)
        self.seqs.append(seq)

    def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.events.append("closed")
        self.close_codes.append(code)
        self.closed.set()

    def abort(self) -> None:
        self.aborted = True

    def text(self, stream: str = "stdout") -> str:
        return "".join(m["data"] for m in self.messages if m["type"] == stream)

    @property
    def final(self) -> dict:
        return self.messages[-1]


class FakeRunner:
    """A scripted batch.Runner: records every request, answers each run with the next scripted
    result (else one that exited 0 and said nothing), or raises the scripted error. A submitted
    run is finished at once, and found again by the key that submitted it alone."""

    def __init__(self, *results: RunResult, versions: dict[str, str] | None = None) -> None:
        self.requests: list[RunRequest] = []
        # The API key each request came with (None: none).
        self.keys: list[Key | None] = []
        self.results: list[RunResult] = list(results)
        self.versions = versions or {}
        # Raised by run() and submit() while set, as a runner that refuses (at capacity, say).
        self.error: Exception | None = None
        # Each submitted run: the name of its key, and its view.
        self.submitted: dict[str, tuple[str | None, RunView]] = {}

    def run(self, request: RunRequest, key: Key | None = None) -> RunResult:
        self.requests.append(request)
        self.keys.append(key)
        if self.error is not None:
            raise self.error
        if self.results:
            return self.results.pop(0)
        ran = Stage(Status.OK, exit_code=0, usage=Usage(1.0, 2.0, 1024))
        return RunResult(request.language, self.version(request.language), compile=None, run=ran)

    def submit(self, request: RunRequest, key: Key | None = None) -> str:
        result = self.run(request, key)
        run_id = str(uuid.uuid4())
        view = RunView(run_id, RunState.FINISHED, request.language, time.time(), result, request=request)
        self.submitted[run_id] = (key.name if key is not None else None, view)
        return run_id

    def get(self, run_id: str, key: Key | None = None) -> RunView:
        owner, view = self.submitted.get(run_id, ("", None))
        if view is None or owner != (key.name if key is not None else None):
            raise EngineError(Kind.NOT_FOUND, f"no run {run_id}")
        return view

    def wait(self, run_id: str, timeout: float, key: Key | None = None) -> RunView:
        return self.get(run_id, key)

    def version(self, language: str) -> str:
        return self.versions.get(language, "1.0.0")
