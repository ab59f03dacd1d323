"""`sandbox-engine bench`: latency and capacity over the public API, end to end, with baselines.

Every figure is measured from the client's side of POST /session and the WebSocket, so it
includes everything a user waits for. The baselines run in the same process and moment, on
the same image, so that ratios between them hold on a noisy machine.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import docker
from websockets.sync.client import ClientConnection

from . import bench_phases, bench_rates, bench_runs
from .bench_baselines import (
    HELLO,
    Series,
    docker_floor,
    docker_run,
    mem_available,
    mem_total_gib,
    native_python,
    raw_docker_api,
    rss,
    runsc_version,
    sandbox_memory,
    server_pids,
)
from .bench_client import Client
from .bench_rates import Rate
from .bench_settle import describe_pool, pool_levels, settle
from .config import Config
from .languages import LANGUAGES

ECHO = "while True:\n    print(input())"
IDLE = "input()"
# What one system call costs a program: under gVisor every one is served by its own kernel. The
# best of many short rounds: a round the CPU limit (0.5) held back would count the wait.
SYSCALL = (
    "import os, time\n"
    "best = 1.0\n"
    "for _ in range(50):\n"
    "    started = time.perf_counter()\n"
    "    for _ in range(200):\n"
    "        os.getppid()\n"
    "    best = min(best, (time.perf_counter() - started) / 200)\n"
    "print(best)\n"
)
# Where the part of BENCHMARKS.md that the benchmark does not write begins.
KEEP_FROM = "<!-- soak"
# Idle sessions held under gVisor, each with a kernel of its own: enough for a per-session figure.
GVISOR_IDLE_SESSIONS = 20


@dataclass(frozen=True)
class Servers:
    """A runtime's pair of servers: one with a warm pool, one without (either may be missing)."""

    warm: str | None = None
    cold: str | None = None


def _until_end(ws: ClientConnection) -> None:
    while True:
        message = json.loads(ws.recv(60))
        if message["type"] == "state" and message["state"] in ("FINISHED", "TERMINATED"):
            return


def first_output(client: Client, series: Series | None = None) -> float:
    """Seconds from POST /session to the first stdout message; the session is then read out,
    and its steps kept with the series (see bench_phases)."""
    phases = bench_phases.timed_session(client, HELLO)
    if series is not None:
        series.samples.append(phases.first_output)
        series.phases.append(phases)
    return phases.first_output


def syscall_cost(client: Client) -> float:
    """Seconds per getppid() in a session, as the program measures it."""
    ws = client.attach(client.create(SYSCALL))
    stdout = ""
    try:
        while True:
            message = json.loads(ws.recv(120))
            if message["type"] == "stdout":
                stdout += message["data"]
            elif message["type"] == "state" and message["state"] in ("FINISHED", "TERMINATED"):
                return float(stdout)
    finally:
        ws.close()


def sequential(client: Client, runs: int) -> Series:
    first_output(client)  # warm-up: connections, the pool's first refill
    series = Series("time to first output, sequential")
    for _ in range(runs):
        first_output(client, series)
    return series


def concurrent(client: Client, sessions: int) -> Series:
    """All sessions started at once; each sample is one session's time to first output."""
    barrier = threading.Barrier(sessions)
    results = Series(f"{sessions} concurrent sessions, each to first output")
    lock = threading.Lock()

    def one() -> None:
        own = Client(client.server)
        barrier.wait()
        phases = bench_phases.timed_session(own, HELLO)
        with lock:
            results.samples.append(phases.first_output)
            results.phases.append(phases)

    threads = [threading.Thread(target=one) for _ in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def throughput(client: Client) -> Rate:
    """Complete short sessions (POST, attach, output, final state), CLIENTS at a time, over a
    first window from a full pool and a steady one after it (see bench_rates)."""

    def one() -> Callable[[], None]:
        own = Client(client.server)

        def session() -> None:
            ws = own.attach(own.create(HELLO))
            try:
                _until_end(ws)
            finally:
                ws.close()

        return session

    return bench_rates.loops(one)


def echo_round_trip(client: Client, rounds: int) -> Series:
    ws = client.attach(client.create(ECHO))
    series = Series("input echo round trip")
    try:
        while json.loads(ws.recv(60)).get("state") != "RUNNING":  # messages carry a seq now
            pass
        for i in range(rounds + 5):
            line = f"echo {i}\n"
            started = time.perf_counter()
            ws.send(json.dumps({"type": "input", "data": line}))
            seen = ""
            while seen != line:
                message = json.loads(ws.recv(60))
                if message["type"] == "stdout":
                    seen += message["data"]
            if i >= 5:  # the first rounds warm the interpreter's input path
                series.samples.append(time.perf_counter() - started)
        ws.send(json.dumps({"type": "kill"}))
        _until_end(ws)
    finally:
        ws.close()
    return series


def idle_memory(client: Client, sessions: int) -> dict:
    """Hold `sessions` interactive sessions waiting in input(); what does each cost?"""
    port = int(client.server.rsplit(":", 1)[1].split("/")[0])
    pids = server_pids(port)
    rss_before, host_before = rss(pids), mem_available()
    sockets: list[ClientConnection] = []
    session_ids: list[str] = []
    try:
        for _ in range(sessions):
            session_ids.append(client.create(IDLE))
            ws = client.attach(session_ids[-1])
            while json.loads(ws.recv(60)).get("state") != "RUNNING":  # messages carry a seq now
                pass
            sockets.append(ws)
        time.sleep(1)
        rss_after, host_after = rss(pids), mem_available()
        sandbox = sandbox_memory(session_ids)
    finally:
        for ws in sockets:
            ws.close()
    return {
        "sessions": len(sockets),
        "server_rss_before_mb": rss_before / 2**20,
        "server_rss_mb": rss_after / 2**20,
        "server_rss_per_session_kb": (rss_after - rss_before) / max(1, len(sockets)) / 1024,
        "host_per_session_mb": (host_before - host_after) / max(1, len(sockets)) / 2**20,
        "sandbox_mb": sandbox / 2**20,
    }


def _s(seconds: float) -> str:
    return f"{seconds:.0f} s"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def run(
    server: str,
    cold_server: str | None,
    runs: int,
    idle_sessions: int,
    out: Callable[[str], None],
    gvisor: Servers | None = None,
) -> dict:
    client = Client(server)
    gvisor = gvisor or Servers()
    image = LANGUAGES["python"].image
    results: dict = {}
    servers = [url for url in (server, cold_server, gvisor.warm, gvisor.cold) if url]
    everyone = [Client(url) for url in servers]

    def quiet() -> str:
        """Every server's pools full, the last phase's sandboxes gone (see bench_settle)."""
        return settle(everyone)

    out("measuring: baselines")
    quiet()
    baselines = [
        native_python(runs),
        raw_docker_api(image, min(runs, 30)),
        docker_run(image, min(runs, 20)),
        docker_floor(Config(), min(runs, 30)),
    ]
    out("measuring: sequential first output")
    pool_before = quiet()
    warm = sequential(client, runs)
    pool_after = describe_pool(pool_levels(client))
    cold = None
    if cold_server:
        quiet()
        cold = sequential(Client(cold_server), runs)
    out("measuring: 20 concurrent sessions")
    pool_burst = quiet()
    burst = concurrent(client, 20)
    out("measuring: input echo")
    echo = echo_round_trip(client, 200)
    out("measuring: Docker's own rate")
    quiet()
    docker_rate = bench_rates.docker_own(image)
    out("measuring: sustained short sessions")
    pool_rate = quiet()
    rate = throughput(client)
    pool_rate_after = describe_pool(pool_levels(client))
    # Right after, with the pool as the load left it: a steady load the machine can sustain.
    out("measuring: sessions at a steady pace")
    paced = bench_rates.paced(server, round(docker_rate.first / 2, 1))
    quiet()
    run_rows, run_figures = bench_runs.measure(server, runs, rate.steady, out, quiet)
    out(f"measuring: {idle_sessions} idle interactive sessions")
    quiet()
    memory = idle_memory(Client(cold_server or server), idle_sessions)
    syscall = syscall_cost(client)
    gvisor_warm = gvisor_cold = gvisor_syscall = gvisor_memory = None
    if gvisor.warm:
        out("measuring: gVisor, sequential first output")
        gvisor_client = Client(gvisor.warm)
        quiet()
        gvisor_warm = sequential(gvisor_client, runs)
        gvisor_syscall = syscall_cost(gvisor_client)
    if gvisor.cold:
        out("measuring: gVisor, pool empty")
        quiet()
        gvisor_cold = sequential(Client(gvisor.cold), runs)
        gvisor_syscall = gvisor_syscall or syscall_cost(Client(gvisor.cold))
        out(f"measuring: gVisor, {GVISOR_IDLE_SESSIONS} idle interactive sessions")
        quiet()
        gvisor_memory = idle_memory(Client(gvisor.cold), GVISOR_IDLE_SESSIONS)

    rows = [
        ("time to first output, print('hi'), sequential (server)", warm),
        ("time to first output, pool empty (cold server)", cold),
        ("time to first output under gVisor, sequential (gVisor server)", gvisor_warm),
        ("time to first output under gVisor, pool empty (gVisor cold server)", gvisor_cold),
        ("20 concurrent sessions: each session's first output", burst),
        ("input echo round trip", echo),
        (f"{paced.series.name}, half Docker's own rate, after the rates", paced.series),
        *run_rows,
        *((b.name, b) for b in baselines),
    ]
    lines = ["| measurement | p50 | p99 | runs |", "| --- | --- | --- | --- |"]
    for name, series in rows:
        if series is not None:
            lines.append(f"| {name} | {_ms(series.p50)} | {_ms(series.p99)} | {len(series.samples)} |")
    native, raw, floor = baselines[0], baselines[1], baselines[3]
    lines += ["", "Where the time goes:", ""]
    lines += bench_phases.table(
        [
            ("warm, sequential", warm.phases),
            ("pool empty (cold server)", cold.phases if cold else []),
            ("gVisor warm, sequential", gvisor_warm.phases if gvisor_warm else []),
            ("gVisor pool empty", gvisor_cold.phases if gvisor_cold else []),
            ("20 concurrent sessions", burst.phases),
            (f"{paced.per_second:.1f} sessions a second, steady", paced.series.phases),
        ]
    )
    lines += [
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| warm pool (waiting/size) before the sequential runs; after | {pool_before}; {pool_after} |",
        f"| warm pool before the 20 concurrent sessions | {pool_burst} |",
        f"| 20 concurrent sessions: all have first output after | {_ms(max(burst.samples))} |",
        f"| complete short sessions per second (4 clients): first {_s(rate.window)} from a full pool; "
        f"steady, the {_s(rate.window)} after | {rate.first:.1f}; {rate.steady:.1f} |",
        f"| warm pool before the sessions per second; after | {pool_rate}; {pool_rate_after} |",
        f"| Docker's own rate: bare containers created, attached, started, read, removed per second "
        f"(4 clients) | {docker_rate.first:.1f} |",
        f"| steady sessions per second / Docker's own rate | {rate.steady / docker_rate.first:.2f}x |",
        f"| sessions started at {paced.per_second:.1f} a second for {_s(paced.seconds)}: warm, cold | "
        f"{paced.warm}, {paced.cold} |",
        f"| warm p50 / native python3 p50 | {warm.p50 / native.p50:.2f}x |",
        f"| warm p50 / Docker floor p50 | {warm.p50 / floor.p50:.2f}x |",
        f"| load average (1, 5, 15 min) at the end | {', '.join(f'{x:.2f}' for x in os.getloadavg())} |",
    ]
    if cold is not None:
        lines.append(f"| cold p50 / raw Docker API p50 | {cold.p50 / raw.p50:.2f}x |")
    lines += [
        f"| idle interactive sessions held | {memory['sessions']} |",
        f"| server RSS (master + workers), before / holding them | {memory['server_rss_before_mb']:.0f} MB / "
        f"{memory['server_rss_mb']:.0f} MB |",
        f"| server RSS per idle session | {memory['server_rss_per_session_kb']:.0f} KB |",
        f"| host memory per idle session (MemAvailable drop) | {memory['host_per_session_mb']:.1f} MB |",
        f"| memory charged to an idle session's sandbox (its cgroup, p50) | {memory['sandbox_mb']:.1f} MB |",
        f"| one system call in a session (getppid, best of 50 rounds) | {syscall * 1e6:.2f} µs |",
        *(f"| {name} | {value} |" for name, value, ok in run_figures if ok is None),
    ]
    if gvisor_warm is not None:
        lines.append(f"| gVisor warm p50 / runc warm p50 | {gvisor_warm.p50 / warm.p50:.2f}x |")
    if gvisor_cold is not None and cold is not None:
        lines.append(f"| gVisor cold p50 / runc cold p50 | {gvisor_cold.p50 / cold.p50:.2f}x |")
    if gvisor_syscall is not None:
        lines.append(
            f"| one system call in a session (getppid, best of 50 rounds), gVisor | "
            f"{gvisor_syscall * 1e6:.2f} µs ({gvisor_syscall / syscall:.0f}x) |"
        )
    if gvisor_memory is not None:
        lines += [
            f"| host memory per idle session, gVisor ({gvisor_memory['sessions']} held) | "
            f"{gvisor_memory['host_per_session_mb']:.1f} MB |",
            f"| memory charged to an idle session's sandbox, gVisor | {gvisor_memory['sandbox_mb']:.1f} MB |",
        ]

    def verdict(ok: bool) -> str:
        return "met" if ok else "not met"

    all_first = max(burst.samples)
    over_floor = warm.p50 / floor.p50
    post, final = bench_phases.p50(warm.phases, "post"), bench_phases.p50(warm.phases, "to_final")
    targets = [
        ("warm first output p50 <= 1.5x the Docker floor", f"{over_floor:.2f}x", over_floor <= 1.5),
        ("warm first output p50 <= 18 ms (an idle machine)", _ms(warm.p50), warm.p50 <= 0.018),
        ("warm first output p99 <= 50 ms", _ms(warm.p99), warm.p99 <= 0.050),
        ("warm p50 <= 1.5x native python3", f"{warm.p50 / native.p50:.2f}x", warm.p50 <= 1.5 * native.p50),
        ("warm POST /session p50 < 3 ms", _ms(post), post < 0.003),
        ("final state <= 10 ms after the last output, warm p50", _ms(final), final <= 0.010),
        ("20 concurrent, pool of 20+: all first output <= 300 ms", _ms(all_first), all_first <= 0.300),
        ("input echo round trip p50 <= 2 ms", _ms(echo.p50), echo.p50 <= 0.002),
        ("complete short sessions per second >= 15, steady", f"{rate.steady:.1f}", rate.steady >= 15),
        (
            # Every idle session asked for must have been held, however many that was.
            f"{idle_sessions} idle interactive sessions held, server RSS <= 300 MB",
            f"{memory['sessions']} held, {memory['server_rss_mb']:.0f} MB",
            memory["server_rss_mb"] <= 300 and memory["sessions"] >= idle_sessions,
        ),
    ]
    if cold is not None:
        targets.insert(
            3,
            ("cold p50 <= 1.1x raw Docker API p50", f"{cold.p50 / raw.p50:.2f}x", cold.p50 <= 1.1 * raw.p50),
        )
    targets += [target for target in run_figures if target[2] is not None]
    lines += ["", "| target | measured | |", "| --- | --- | --- |"]
    lines += [f"| {name} | {value} | {verdict(ok)} |" for name, value, ok in targets]
    results["table"] = "\n".join(lines)
    return results


def main(
    server: str,
    cold_server: str | None,
    runs: int,
    idle_sessions: int,
    markdown: str | None,
    gvisor: Servers | None = None,
) -> int:
    results = run(server, cold_server, runs, idle_sessions, lambda line: print(line, file=sys.stderr), gvisor)
    print(results["table"])
    if markdown:
        command = " ".join(["sandbox-engine", *sys.argv[1:]]) if sys.argv else "sandbox-engine bench"
        machine = (
            f"{platform.machine()}, {os.cpu_count()} cores, {mem_total_gib():.0f} GiB, {platform.platform()}"
        )
        api = docker.APIClient(version="1.41")
        runsc = api.info().get("Runtimes", {}).get("runsc")
        with_gvisor = (
            f" and gVisor's `{runsc['path']} {' '.join(runsc.get('runtimeArgs', []))}` ({runsc_version()})"
            if gvisor and (gvisor.warm or gvisor.cold) and runsc
            else ""
        )
        # What other commands wrote below the benchmark's own part (make soak's section) stays.
        kept = ""
        if os.path.exists(markdown):
            with open(markdown) as f:
                text = f.read()
            kept = text[text.find(KEEP_FROM) :] if KEEP_FROM in text else ""
        with open(markdown, "w") as f:
            f.write(
                "# Benchmarks\n\n"
                f"Measured {date.today().isoformat()} on {machine}, Docker "
                f"{api.version()['Version']}{with_gvisor}, with:\n\n"
                f"```sh\nmake bench   # {command}\n```\n\n"
                "All figures are end to end over the public API (POST /session, the WebSocket, the first "
                "`stdout` message), from a client on the same machine. Baselines ran in the same run: "
                "compare ratios, not absolute numbers, between runs on a shared machine.\n\n"
                f"{results['table']}\n\n{bench_phases.EXPLAINED}" + (f"\n{kept}" if kept else "")
            )
    return 0
