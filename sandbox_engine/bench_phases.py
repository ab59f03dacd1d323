"""Where a session's time goes, as its client sees it: the benchmark's split of each figure.

Each measured session is timed at every step a client can see (POST /session answered, the
WebSocket open, the RUNNING state, the first output, the last output, the final state), so that
BENCHMARKS.md says for every figure which step took the time, and the next person starts from
that profile.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from websockets.sync.client import ClientConnection


class Client(Protocol):
    def create(self, code: str, **extra) -> str: ...

    def attach(self, session_id: str) -> ClientConnection: ...


@dataclass(frozen=True)
class Phases:
    """One session's steps, in seconds, each from the end of the one before."""

    post: float
    ws_open: float
    to_running: float
    to_first_output: float
    # From the last output message to the final state message.
    to_final: float

    @property
    def first_output(self) -> float:
        return self.post + self.ws_open + self.to_running + self.to_first_output


def timed_session(client: Client, code: str) -> Phases:
    """Run one session of `code` to its end, timing each step."""
    started = time.perf_counter()
    session_id = client.create(code)
    posted = time.perf_counter()
    ws = client.attach(session_id)
    opened = time.perf_counter()
    running = first = last = None
    try:
        while True:
            message = json.loads(ws.recv(60))
            now = time.perf_counter()
            if message["type"] in ("stdout", "stderr"):
                first = first or now
                last = now
            elif message["type"] == "state" and message["state"] in ("RUNNING", "COMPILING"):
                running = running or now
            elif message["type"] == "state" and message["state"] in ("FINISHED", "TERMINATED"):
                ended = now
                break
    finally:
        ws.close()
    running = running or opened
    first = first or ended
    last = last or first
    return Phases(posted - started, opened - posted, running - opened, first - running, ended - last)


STEPS = (
    ("POST", "post"),
    ("WS open", "ws_open"),
    ("open → RUNNING", "to_running"),
    ("RUNNING → first output", "to_first_output"),
    ("last output → final state", "to_final"),
)


def p50(phases: Sequence[Phases], step: str) -> float:
    return statistics.median(getattr(p, step) for p in phases)


def table(rows: Sequence[tuple[str, Sequence[Phases]]]) -> list[str]:
    """Markdown: each figure's median step by step (the medians need not add up to its p50)."""
    lines = [
        "| figure (p50 of each step) | " + " | ".join(name for name, _ in STEPS) + " | runs |",
        "| --- |" + " --- |" * (len(STEPS) + 1),
    ]
    for name, phases in rows:
        if phases:
            steps = " | ".join(f"{p50(phases, step) * 1000:.1f} ms" for _, step in STEPS)
            lines.append(f"| {name} | {steps} | {len(phases)} |")
    return lines


# What each step holds, from the profile of issue 14 (py-spy of the workers, and the same steps
# timed on the executor alone): written under the split in BENCHMARKS.md.
EXPLAINED = """What each step holds (warm, then what a cold start adds):

- **POST**: admission (the records' lock, the record and the program written), the take of a warm
  sandbox (one rename of its entry in the state directory, see `pool_members`), the record
  rewritten with its sandbox. No Docker call. Cold: Docker's create (a uid leased, the container
  made).
- **WS open**: the WebSocket handshake, and the session's record read.
- **open → RUNNING**: the claim (warm: one rename in the state directory; Docker's rename to the
  session's claimed name follows on a thread of its own, off this path: it took 19 ms p50 at load
  11 and 48 ms at load 25), docker-py's `attach_socket` (one Docker call), the header and the
  program written, the RUNNING record. Cold: Docker's start too (runc, the shim, the cgroup).
- **RUNNING → first output**: inside the sandbox the launcher reads the header, writes the source,
  lets its forked child go, which runs the program; then Docker's stdio path (the shim, dockerd,
  the attach stream), the pump and one WebSocket frame. The Docker floor baseline is this step's
  share that no server can avoid, plus the attach. Cold: the interpreter's start too.
- **last output → final state**: the program's exit (its interpreter's finalization), the
  launcher's wait for it and for every other process of its user, its EXIT mark (exit code and
  usage) through Docker's stdio path, 5 ms for a separate stderr to settle, the record's end, one
  WebSocket frame. The container's stop and removal come after, off the client's path.

On a loaded machine every step stretches with the run queue (the sandbox's processes, runc,
containerd and dockerd wait for a core like everything else): compare the steps with the
baselines of the same run, not with another run's.
"""
