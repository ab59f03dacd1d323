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


# What each step holds, from the profile of issue 14 (py-spy of the workers, and the server's own
# timestamps of each step, added for the profile and taken out): written under the split.
EXPLAINED = """What each step holds (warm, then what a cold start adds), with the server's own
timestamps of quiet runs of 40 warm sessions (p50, from the POST's start; a client and a server
on one machine). Each phase starts once every server's pools are full and the last phase's
sandboxes are removed (see `bench_settle`): refills and removals wait for quiet, and would
otherwise run beside the next phase, another server's included.

- **POST** (2.5-3.9 ms from run to run): the server's own part (its access log's `durationMs`)
  is 1.1 ms: admission (the records' lock, the record written: 0.4 ms), the program written, the
  take of a warm sandbox (one rename of its entry in the state directory, see `pool_members`:
  0.2 ms), the record rewritten with its sandbox (0.2 ms); no Docker call. The rest is HTTP on
  both sides (gunicorn's parser, Flask's request, the client's): a GET /healthz costs 0.43 ms on
  the bench's plain keep-alive connection. Python's `requests` adds 0.5 ms to each request,
  which is why the bench does not POST with it (see `bench_client`). Cold: Docker's create (a
  uid leased, the container made: 11 ms), and its entry in the state store as taken by the session
  (`Claims.made`: a file written and renamed, 0.2 ms).
- **WS open** (2.3-2.7 ms): the client's connection and handshake reach the server at 1.4 ms (one
  profile's p50); the record read and the checks before the upgrade, 0.9 ms.
- **open → RUNNING** (3.0-4.4 ms): the claim (warm: one rename in the state directory, 0.8 ms with
  the RUNNING record), docker-py's `attach_socket` (the one Docker call, 1.7 ms), the header and
  the program written, one WebSocket frame (0.8 ms). Docker's rename to the session's claimed name
  follows only for a session still running 2 s later (see `claims`): a short one never pays it.
  Cold: the claim in the state store as a warm one's (it was Docker's rename, 3.8 ms), the attach
  (1.5 ms) and Docker's start (75-83 ms: runc, the shim, the cgroup; 70-77 ms for any container
  here, hardened or bare, whatever its options).
- **RUNNING → first output** (1.7 ms): from the header written to the first bytes read back,
  2-3 ms: inside the sandbox the launcher reads the header, writes the source, lets its forked
  child go, which runs the program (`runpy`'s first-call imports were paid before the fork:
  they were 6 ms of this step); then Docker's stdio path (the shim, dockerd, the attach
  stream). Then the pump and one WebSocket frame, 0.5 ms. The Docker floor baseline is this
  step's header-to-bytes share plus the attach: no server can do less. Cold: the sh launcher's
  start, then `python3 -u main.py` under se-run (12-14 ms; see below).
- **last output → final state** (5.9-7.9 ms): the program's exit (its interpreter's finalization,
  with the launcher's objects frozen out of its collections), the launcher's wait for it and for
  every other process of its user, its EXIT mark (exit code and usage) on stdout and END mark on
  stderr through Docker's stdio path (3.4 ms from the last output to both marks read), the
  record's end (1.7 ms), one WebSocket frame (1.4 ms). The container's removal comes after, off
  the client's path, once sessions stop arriving (see `removals`).
- **POST /run** (17-21 ms p50): a batch run is a session without the WebSocket: admission and the
  take of a warm sandbox as a POST /session's, the claim, the attach, the header, the code and
  one test frame, the program, its EXIT (and END) marks, the result recorded, the answer. Python's
  launcher runs the first test in its waiting, forked interpreter, as se-run runs a test (its
  arguments, its stdin on a pipe of its own, its timeout, an abort, the same marks), and se-run
  runs each test after it as a fresh `python3`: a run was 8 ms slower when every test was one
  (measured alone, one server, a pool of 64, `bench_runs`' `hello_latency` for 40 runs: p50 24.6
  ms before, 16.8 ms after). Every phase of the runs starts as the sessions' do (pools full,
  removals done), so their rates compare.

Back to back (the sequential figure: no pause between sessions) each session would start while
Docker tears down the one before (the shim's exit, containerd's and dockerd's handling of it,
runc's cgroup): the Python and fork launchers keep an ended sandbox up, idle, until its removal,
which waits for a quiet moment (at most 2 s, see `removals`), and the teardown happens then. With
CI's suite running beside it, 40 back-to-back warm sessions took 61 and 74 ms p50 without that,
18 and 28 ms with it. On a loaded machine every step stretches with the run
queue (the sandbox's processes, runc, containerd and dockerd wait for a core like everything
else): compare the steps with the baselines of the same run, not with another run's.

Where the targets not met stand:

- **Warm over the Docker floor.** The floor (4-5 ms) is the attach, the launcher's hand-over and
  Docker's stdio path; over it a session pays two HTTP exchanges (the POST, the WebSocket's
  handshake), the claim and the frames, some 7-9 ms of Python on both sides. 1.5x would leave
  2-2.5 ms for them. Every millisecond taken out of the launcher lowers the floor as much as the
  warm figure, so the ratio rose (1.8x to 2.8x) as both fell.
- **Cold over the raw Docker API** (1.1-1.45 from run to run, with the load: Docker's start
  varies by ±10 ms). The raw path is a bare container (no limits, no init, no tmpfs) running
  `python3 -c`, whose interpreter starts while Docker's start call returns, and whose removal
  comes after the measurement, alone; a cold session's comes at the next quiet moment, beside
  the next sessions. A cold session adds the POST and the WebSocket (6 ms) and the program's
  start after the header (12-14 ms from RUNNING to the first output, against 6 ms for the raw
  path after its start returns): a sandbox made for its session runs the language's plain
  command under the sh launcher (`python3 -u main.py`, `node main.js`, ...), since the Python
  and fork launchers' own start (25-27 ms for Python's) is worth paying only before the code
  comes, in a warm pool; its final state follows 3.5 ms later than theirs (se-run writes no END
  mark for a single run: a separate stderr completes once it stays quiet). Its claim is made in
  the state store (Docker's rename is gone from its path), and the Python image's
  `sitecustomize` is byte-compiled (a stale cache had every `python3` there compile it at its
  start, 1.1 ms). Neither moved the cold figure beyond the noise of interleaved runs (2.3 ms
  between two servers of the same code). Starting a session's sandbox behind its POST, while
  the client connects, did not either: the POST's answer and the WebSocket's handshake take 9
  ms here, the attach waits for Docker's start all the same (the container's lock), and on 2
  cores the start's CPU competes with them; it was taken out again.
- **Sessions per second.** Every short session costs the machine a container's life: created,
  started, its launcher ready, removed. Measured alone, 4 at a time, that is 161 ms of CPU per
  container (194 ms while the pool still asked `docker top`, which runs `ps` over the whole
  machine, whether a new sandbox was ready: now its cgroup and `/proc` tell): dockerd and
  containerd some 20 ms each, the launcher's interpreter 21 ms, docker-init 13 ms, the shim and
  runc the rest. The rate has two windows (see `bench_rates`): the first 15 s draw on the pool's
  stock (64 sandboxes made before the load; the pool is down to one or two after them: refills
  wait for quiet unless it is empty), and the steady 15 s after them, when every session pays
  for a container made then. Until 2026-11-30 the bench reported one 15 s window from a full
  pool, and called it sustained; it was the first window. Docker's own rate, measured in the
  same run, is bare containers (no limits, no init, no launcher: `python3 -c`) created,
  attached, started, read, waited for and removed, 4 clients one after another: no server that
  gives every session a container of its own sustains more, and on this machine it is far from
  15 a second (3.5 in the first run with it; 5.7-9.4 on the same machine within the hour before
  it, measured alone with the same loop). The steady sessions per second were 0.86-1.0x of it:
  the server's own time (20 ms of CPU a session) and the sandbox's hardening cost about as much
  again as the bare path's. The steady pace at half Docker's own rate, right after, with the
  pool as the load left it, found a warm sandbox for every session (a refill between two
  sessions) at 2.6x the idle warm figure: the cores are busy with the sandboxes' refills and
  removals. A pool that refilled without waiting for quiet once below a quarter of its size did
  no better (at 2.2 and 3 sessions a second against the same code without it, paired: as many
  or more cold sessions, a p50 as high or higher), and was not kept.

Absolute figures depend on the host: two runs of this description on the same day measured
native python3's start at 6.9 and 14.4 ms, and every figure with it. Compare each figure with
the baselines of its own run.
"""
