"""Prometheus metrics: what the engine, its runs, its pool and the Docker calls count, and the
text GET /metrics answers with.

Under `sandbox-engine serve` every worker counts in files of its own in one private directory
(prometheus_client's multiprocess mode: PROMETHEUS_MULTIPROC_DIR, set and emptied before the
workers start), and a scrape of any worker adds them all up; a dead worker's counts stay counted,
its gauges go with it. Without that directory (the unit tests, one process) a Metrics counts in
a registry of its own.

Counting is a number changed in memory or in a mapped file: it never waits for Docker or the
network, so the engine counts as it goes.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
PREFIX = "sandbox_engine_"
# Seconds to a session's first output: a warm start takes tens of milliseconds, a cold one a few
# hundred, a compiled language's the compiler's time.
FIRST_OUTPUT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


log = logging.getLogger(__name__)


def _start(warm: bool) -> str:
    return "warm" if warm else "cold"


def _never_in_the_way(count: Callable[..., None]) -> Callable[..., None]:
    """A count that fails (a full disk under the multiprocess mode's files) is lost, and said
    once, but never fails the session, request or end it was counting."""

    @functools.wraps(count)
    def counting(self: Metrics, *args: object) -> None:
        try:
            count(self, *args)
        except Exception:
            if not self.failed:
                self.failed = True
                log.exception("a metric could not be counted; counts may fall short from now on")

    return counting


class Metrics:
    """The server's metrics, with one narrow method per thing counted."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        # Set once a count failed (see _never_in_the_way).
        self.failed = False
        r = self.registry
        self._started = {
            batch: Counter(
                f"{PREFIX}{kind}_started",
                f"{kind.capitalize()} admitted, by language and start (warm: a pool's sandbox, or cold)",
                ["language", "start"],
                registry=r,
            )
            for batch, kind in ((False, "sessions"), (True, "runs"))
        }
        self._ended = {
            batch: Counter(
                f"{PREFIX}{kind}_ended",
                f"{kind.capitalize()} ended, by language and reason (each counted once, by whoever ended it)",
                ["language", "reason"],
                registry=r,
            )
            for batch, kind in ((False, "sessions"), (True, "runs"))
        }
        self._output = Counter(
            f"{PREFIX}output_bytes",
            "Bytes of stdout and stderr delivered, counted when a session or run ends",
            ["kind", "language"],
            registry=r,
        )
        self._first_output = Histogram(
            f"{PREFIX}session_first_output_seconds",
            "Seconds from a session's POST to its program's first output",
            ["start"],
            buckets=FIRST_OUTPUT_BUCKETS,
            registry=r,
        )
        self._active = {
            batch: Gauge(
                f"{PREFIX}{kind}_active",
                f"{kind.capitalize()} whose program runs now, in every worker",
                registry=r,
                multiprocess_mode="livesum",
            )
            for batch, kind in ((False, "sessions"), (True, "runs"))
        }
        self._pool = Gauge(
            f"{PREFIX}pool_warm",
            "Warm sandboxes waiting in the pool, as its refiller last saw them",
            ["language", "tty"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self._docker = Counter(
            f"{PREFIX}docker_failures",
            "Docker calls that failed, by operation and error (unreachable, image_missing, Docker's status)",
            ["operation", "error"],
            registry=r,
        )
        self._attached = Counter(
            f"{PREFIX}reattachments",
            "Resumes and watchers attached, by kind (resume, watch) and path: local (on the run's own "
            "worker) or relayed (from another worker, through the run's worker's relay socket)",
            ["kind", "path"],
            registry=r,
        )
        self._refused = Counter(
            f"{PREFIX}requests_refused",
            "HTTP requests answered with an error, by API (sandbox, piston, judge0) and error code",
            ["api", "code"],
            registry=r,
        )

    # --- what the engine, the pool, the executor and the app count ----------------------------
    @_never_in_the_way
    def started(self, language: str, batch: bool, warm: bool) -> None:
        self._started[batch].labels(language, _start(warm)).inc()

    @_never_in_the_way
    def ended(self, language: str, batch: bool, reason: str, output_bytes: int) -> None:
        self._ended[batch].labels(language, reason).inc()
        self._output.labels("run" if batch else "session", language).inc(output_bytes)

    @_never_in_the_way
    def first_output(self, warm: bool, seconds: float) -> None:
        self._first_output.labels(_start(warm)).observe(max(0.0, seconds))

    @_never_in_the_way
    def sessions_active(self, count: int) -> None:
        """This worker's running sessions (every worker reports its own; a scrape adds them)."""
        self._active[False].set(count)

    @contextmanager
    def run_active(self) -> Iterator[None]:
        """Counts a batch run as active while its program runs."""
        self._runs_active(1)
        try:
            yield
        finally:
            self._runs_active(-1)

    @_never_in_the_way
    def _runs_active(self, change: int) -> None:
        self._active[True].inc(change)

    @_never_in_the_way
    def pool_level(self, language: str, tty: bool, warm: int) -> None:
        self._pool.labels(language, "true" if tty else "false").set(warm)

    @_never_in_the_way
    def docker_failed(self, operation: str, error: str) -> None:
        self._docker.labels(operation, error).inc()

    @_never_in_the_way
    def reattached(self, kind: str, relayed: bool) -> None:
        self._attached.labels(kind, "relayed" if relayed else "local").inc()

    @_never_in_the_way
    def refused(self, api: str, code: str) -> None:
        self._refused.labels(api, code).inc()

    # --- the scrape ---------------------------------------------------------------------------
    def exposition(self, now: Iterable[Metric] = ()) -> bytes:
        """Prometheus' text: every worker's counts (or this registry's, in one process), then
        `now`, figures read at the scrape itself."""
        directory = os.environ.get(MULTIPROCESS_ENV)
        if directory:
            from prometheus_client import multiprocess

            counted = CollectorRegistry()
            multiprocess.MultiProcessCollector(counted, path=directory)
        else:
            counted = self.registry
        scraped = CollectorRegistry()
        scraped.register(_Figures(list(now)))
        return generate_latest(counted) + generate_latest(scraped)


class _Figures:
    """A collector of figures read at the scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def gauge(name: str, documentation: str, value: float | None = None, labels: Iterable[str] = ()) -> Metric:
    """A gauge read at the scrape (see Metrics.exposition); add_metric for labelled samples."""
    family = GaugeMetricFamily(PREFIX + name, documentation, value=value, labels=list(labels) or None)
    return family


def clear_directory(path: str) -> None:
    """Empty the multiprocess mode's directory: at server start, before any worker, so that no
    count of an earlier server's is added to this one's."""
    for entry in os.scandir(path):
        if entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)


def mark_dead(pid: int) -> None:
    """A worker is gone: its gauges with it (its counters stay counted)."""
    directory = os.environ.get(MULTIPROCESS_ENV)
    if directory:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, directory)
