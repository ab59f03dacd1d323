"""Rates for `sandbox-engine bench`: complete short sessions (or runs) per second, and Docker's
own rate on the same machine as their baseline.

A rate is measured from a full warm pool, and the pool is a stock: a server that refills only
in quiet moments (see pool) serves its first seconds of load from sandboxes made before them.
So each loop runs for two windows and both are reported: the first, drawn in part from the
stock, and the steady one after it, once the pool has been drawn down and every session pays
for its own container (made then, or by a refill between sessions). The steady window is the
sustained rate.

Under a steady load below what the machine sustains, sessions should still be warm: `paced`
starts sessions at a steady pace (half Docker's own rate) right after the rates, with the pool as
they left it, and says how many of them found a warm sandbox and how soon each had its output.

Docker's own rate is the least a session can cost the machine: bare containers (no limits, no
init, no launcher) created, attached, started, read to their end and removed, by as many
clients, one after another. No server sustains more sessions a second than Docker sustains
containers, as every session has a container of its own.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import docker
import requests
from prometheus_client.parser import text_string_to_metric_families

from . import bench_phases
from .bench_baselines import HELLO, Series, bare_container
from .bench_client import Client

# Seconds of each window.
WINDOW = 15.0
CLIENTS = 4


@dataclass
class Rate:
    """When each loop's iterations completed, in seconds from the loops' start."""

    window: float
    completed: list[float] = field(default_factory=list)

    def per_second(self, index: int) -> float:
        """Completions per second in window `index` (0: the first, 1: the steady one)."""
        start, end = index * self.window, (index + 1) * self.window
        return sum(start <= t < end for t in self.completed) / self.window

    @property
    def first(self) -> float:
        return self.per_second(0)

    @property
    def steady(self) -> float:
        return self.per_second(1)


def loops(one: Callable[[], Callable[[], None]], windows: int = 2, parallel: int = CLIENTS) -> Rate:
    """Run `parallel` loops of an iteration for `windows` windows; `one()` makes a loop's own
    iteration (its own client and connection), called in that loop's thread."""
    rate = Rate(WINDOW)
    lock = threading.Lock()
    started = time.perf_counter()
    deadline = started + windows * WINDOW

    def loop() -> None:
        iteration = one()
        while time.perf_counter() < deadline:
            iteration()
            with lock:
                rate.completed.append(time.perf_counter() - started)

    threads = [threading.Thread(target=loop) for _ in range(parallel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(windows * WINDOW + 120)
    return rate


def docker_own(image: str, windows: int = 1) -> Rate:
    """Bare containers of `image` running print('hi'): created, attached, started, read to their
    end, waited for and removed, CLIENTS at a time."""

    def one() -> Callable[[], None]:
        api = docker.APIClient(version="1.41")

        def iteration() -> None:
            container, sock = bare_container(api, image)
            try:
                while sock.recv(65536):
                    pass
                sock.close()
                api.wait(container)
            finally:
                api.remove_container(container, force=True)

        return iteration

    return loops(one, windows)


@dataclass
class Paced:
    """Sessions started at a steady pace: each one's first output, and how many were warm."""

    per_second: float
    seconds: float
    series: Series
    warm: int
    cold: int


def started(server: str) -> Counter:
    """Sessions started so far by start (warm, cold), from the server's metrics."""
    text = requests.get(f"{server}/metrics", timeout=30).text
    counts: Counter = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "sandbox_engine_sessions_started_total":
                counts[sample.labels["start"]] += int(sample.value)
    return counts


def paced(server: str, per_second: float, seconds: float = 2 * WINDOW) -> Paced:
    """Sessions of print('hi') started every 1/per_second s for `seconds`, each on its own
    thread (so a slow one holds no other back), each timed to its first output."""
    before = started(server)
    series = Series(f"first output, sessions started at {per_second:.1f} a second")
    lock = threading.Lock()
    began = time.perf_counter() + 0.5

    def one(at: float) -> None:
        client = Client(server)
        time.sleep(max(0.0, at - time.perf_counter()))
        phases = bench_phases.timed_session(client, HELLO)
        with lock:
            series.samples.append(phases.first_output)
            series.phases.append(phases)

    threads = [
        threading.Thread(target=one, args=(began + i / per_second,))
        for i in range(round(per_second * seconds))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 120)
    after = started(server)
    return Paced(per_second, seconds, series, after["warm"] - before["warm"], after["cold"] - before["cold"])
