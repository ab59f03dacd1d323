"""gunicorn settings and hooks for `sandbox-engine serve`: the gevent worker and clean shutdowns."""

from __future__ import annotations

import ctypes
import logging
import os

# Light: the package's __init__ loads nothing (see create_app there).
from sandbox_engine import logs
from sandbox_engine.states import Reason

worker_class = "gevent"
worker_connections = 1000
# Sessions are ended within a few seconds of a shutdown signal; this is the hard stop after that.
graceful_timeout = 15
timeout = 30
keepalive = 5
# gunicorn's control socket lives at one path per user by default, so servers on one machine
# shared it and stopping one removed it; we use none.
control_socket_disable = True
# Our own line per request replaces gunicorn's access log (see access); every line, gunicorn's
# included, is in the server's one format (`--log-format`, which `serve` hands over).
accesslog = None
logconfig_dict = logs.logconfig(logs.resolve(os.environ.get("SANDBOX_ENGINE_LOG_FORMAT", "auto")))

log = logging.getLogger("sandbox_engine")

# How often a worker hands the memory glibc holds free back to the system (malloc_trim), in
# seconds; SANDBOX_ENGINE_MALLOC_TRIM=0 never. A worker is one thread, so one heap, and what a
# burst of sessions allocates and frees (64 KiB reads, their text, their frames) stays there as
# free memory between what is still in use: without this its RSS stays at the burst's high-water
# mark (BENCHMARKS.md, soak).
TRIM_EVERY = float(os.environ.get("SANDBOX_ENGINE_MALLOC_TRIM", "30"))


def _reap(reason: Reason) -> int:
    """Remove every container of this instance, in a child process: the master must not import
    docker-py (and with it ssl) before it forks, or gevent patches the workers' ssl too late."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "sandbox_engine.cli", "reap", "--reason", reason],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        log.warning("could not reap leftover containers: %s", done.stderr.strip()[-500:])
        return 0
    return int(done.stdout.strip() or 0)


def on_starting(server) -> None:
    # No worker runs yet, so every container of this instance was left by a server that died.
    count = _reap(Reason.INTERNAL_ERROR)
    if count:
        server.log.info("removed %d container(s) left by an earlier server", count)
    warn_if_open(server.log)


def warn_if_open(logger) -> None:
    """Say once, at start, that a server without any API key lets anyone run code."""
    from sandbox_engine.config import Config
    from sandbox_engine.keys import KeyStore

    config = Config.from_env()
    if config.auth != "required" and not KeyStore.for_config(config).required():
        logger.warning(
            "no API key exists: anyone who reaches this server runs code on it; "
            "make one with `sandbox-engine keys create NAME` (see README: Operating it)"
        )


def on_exit(server) -> None:
    # Workers have ended their sessions; this removes anything a killed worker could not.
    _reap(Reason.SERVER_SHUTDOWN)


def _machinery(worker):
    """Our Worker (engine, pool, reaper) in the gunicorn worker process `worker`."""
    return worker.wsgi.extensions["sandbox_engine"]


def post_worker_init(worker) -> None:
    import gevent

    from sandbox_engine import memprobe

    machinery = _machinery(worker)
    machinery.ensure_started()
    # Off unless SANDBOX_ENGINE_MEMPROBE names a directory (see memprobe).
    memprobe.install(machinery.engine)

    def watch_for_exit() -> None:
        # SIGTERM only clears worker.alive; end the sessions at once rather than wait them out.
        while worker.alive:
            gevent.sleep(0.2)
        machinery.shutdown()

    gevent.spawn(watch_for_exit)
    trim = _malloc_trim()
    if trim is not None and TRIM_EVERY > 0:

        def give_back_memory() -> None:
            while worker.alive:
                gevent.sleep(TRIM_EVERY)
                trim(0)

        gevent.spawn(give_back_memory)


def _malloc_trim():
    """glibc's malloc_trim, or None under another C library."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


def worker_int(worker) -> None:
    _machinery(worker).shutdown()


def worker_exit(server, worker) -> None:
    _machinery(worker).shutdown()


def child_exit(server, worker) -> None:
    # In the master, for any worker that ended (SIGKILL too): its gauges go, its counts stay.
    from sandbox_engine.metrics import mark_dead

    mark_dead(worker.pid)
