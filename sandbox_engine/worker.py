"""One worker process's machinery, wired in one place: the engine, its warm pool and its reaper,
built together, started together once per process, and stopped together.

The engine imports neither the pool nor the reaper: each depends on a narrow view of the others,
handed over here.
"""

from __future__ import annotations

import logging
import os
import threading

from flask import current_app

from . import logs
from .batch import Runner
from .config import Config
from .engine import SHUTDOWN_GRACE, Engine
from .executor import Executor
from .hub import Mirror
from .languages import LANGUAGES, LanguageSpec
from .metrics import Metrics
from .pool import Pool
from .reaper import Reaper
from .records import Record
from .relay import Owners, RelayServer
from .relayed import serve_relayed
from .runs import Runs
from .store import Store, relay_owners
from .timeouts import DEADLINE_GRACE

EXTENSION = "sandbox_engine"

# Each session's and run's end, one line (see Record.log_fields).
ends_log = logging.getLogger("sandbox_engine.ends")


class Worker:
    def __init__(
        self,
        config: Config,
        executor: Executor,
        records: Store,
        languages: dict[str, LanguageSpec] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        # One per process (its counts are the process's; see metrics).
        self.metrics = metrics if metrics is not None else Metrics()
        languages = languages if languages is not None else LANGUAGES
        self.engine = Engine(config, executor, records, languages, self.metrics)
        # Every end is told once, by the worker whose record of it came first.
        records.on_end = self._ended
        # Batch runs share the engine's sandboxes, pool, capacity and records.
        self.runs: Runner = Runs(self.engine)
        self.pool: Pool | None = None
        if self.engine.pool_sizes:
            self.pool = Pool(
                executor,
                self.engine.sandbox_spec,
                self.engine.pool_sizes,
                # Sessions never pass --max-sessions and warm sandboxes never pass the pool's
                # size: the server's containers never pass the two together.
                capacity=config.max_sessions + sum(self.engine.pool_sizes.values()),
                state_dir=records.directory,
                members=self.engine.members,
                on_level=self.metrics.pool_level,
            )
            self.engine.on_take = self.pool.wake
            # Removals wait for the quiet the refill waits for: no take in any worker.
            self.engine.removals.quiet_for = self.pool.quiet_for
        self.reaper = Reaper(
            executor,
            records,
            self.engine,
            idle_timeout=config.idle_timeout,
            keep_records=config.record_ttl,
            max_records=config.max_records,
            max_age=max_session_age(config),
            members=self.engine.members,
        )
        self.relay: RelayServer | None = None
        self.owners: Owners | None = None
        self.mirror: Mirror | None = None
        self._started_pid: int | None = None
        self._lock = threading.Lock()

    def ensure_started(self) -> None:
        """Start the reaper and the pool's refiller in this process. Idempotent; threads started
        before gunicorn forks would be lost, so a forked worker starts its own."""
        if self._started_pid == os.getpid():
            return
        with self._lock:
            if self._started_pid == os.getpid():
                return
            self._started_pid = os.getpid()
            self._start_relay()
            self.reaper.start()
            if self.pool is not None:
                self.pool.start()

    def _ended(self, record: Record) -> None:
        self.metrics.ended(record.language, record.batch, record.reason or "", record.output_bytes or 0)
        logs.event(ends_log, "run ended" if record.batch else "session ended", **record.log_fields())

    def shutdown(self) -> None:
        """Stop refilling and reaping, then end every run of this worker (see Engine.shutdown)."""
        if self.pool is not None:
            self.pool.stop()
        self.reaper.stop()
        self.engine.shutdown()
        self.engine.hubs.clear()
        if self.relay is not None:
            self.relay.stop()
        if self.mirror is not None:
            self.mirror.stop()  # after the runs ended: their final states are copied too
        if isinstance(self.runs, Runs):
            self.runs.shutdown(SHUTDOWN_GRACE)

    def _start_relay(self) -> None:
        """This worker's listener for resumes landing on other workers, or replicas (see relay);
        named by the worker's pid, so started after the fork."""
        engine = self.engine
        self.owners = relay_owners(engine.records, engine.owner, engine.config)
        self.relay = RelayServer(self.owners, lambda *args: serve_relayed(engine, *args))
        self.relay.start()
        engine.hubs.on_open = self.owners.advertise
        engine.hubs.on_forget = self.owners.withdraw
        if engine.config.reconnect_grace > 0:
            self.mirror = self.owners.mirror(engine.config.replay_limit, engine.config.reconnect_grace)
        if self.mirror is not None:
            self.mirror.start()
            engine.hubs.mirror = self.mirror


def max_session_age(config: Config) -> float:
    """From its creation, how long a session may wait for its client, then compile and run,
    then be cut off (see SessionRun's hard deadline), with a minute to spare."""
    return config.idle_timeout + config.compile_timeout + config.run_timeout + DEADLINE_GRACE + 60


def current_worker() -> Worker:
    return current_app.extensions[EXTENSION]


def current_runs() -> Runner:
    """The batch runs of the app handling this request, for the blueprints."""
    return current_worker().runs


def current_owners() -> Owners:
    """Where the sessions of this app's workers are held, for the WebSocket's relayed resumes."""
    worker = current_worker()
    worker.ensure_started()
    assert worker.owners is not None
    return worker.owners


def current_engine() -> Engine:
    """The engine of the app handling this request, for the blueprints."""
    return current_worker().engine
