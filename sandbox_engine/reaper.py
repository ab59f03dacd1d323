"""The reaper: a thread per worker that removes containers nobody will ever end.

It removes sessions created but never attached once the idle timeout passes, containers whose
claiming worker has died, and containers this worker claimed but no longer runs (a removal that
failed while Docker was away). Reaping is idempotent, so every worker's reaper may run at once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from .errors import EngineError
from .executor import ExecutorError, SandboxInfo

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger(__name__)

INTERVAL = 1.0
PRUNE_EVERY = 60.0
# A pooled sandbox not running, or half taken, for this long was left by someone who failed.
STUCK = 60.0


def owner_alive(owner: str) -> bool:
    """Owners are 'p<pid>' of a worker on this host (one server's workers share a host)."""
    if not owner.startswith("p") or not owner[1:].isdigit():
        return False
    try:
        os.kill(int(owner[1:]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Reaper:
    def __init__(self, engine: Engine, interval: float = INTERVAL) -> None:
        self.engine = engine
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_prune = 0.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="reaper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.reap_once()
            except ExecutorError as exc:
                log.debug("reaper: runtime unavailable: %s", exc)
            except EngineError as exc:  # an executor failure, as the engine reports it
                log.debug("reaper: %s", exc.message)
            except Exception:
                log.exception("reaper pass failed")

    def reap_once(self) -> None:
        engine = self.engine
        executor, records, config = engine.executor, engine.records, engine.config
        now = time.time()
        mine = engine.live_session_ids()
        for info in executor.list():
            if info.pooled:
                if self._pooled_is_dead(info, now):
                    log.info("reaping pooled sandbox %s", info.labels.get("name"))
                    executor.remove_sandbox(info)
                continue
            reason = self._verdict(info, now, mine)
            if reason is None:
                continue
            log.info("reaping session %s (%s)", info.session_id, reason)
            if not info.claimed:
                engine.expire(info.session_id, reason)
                continue
            # An ending already decided (a kill, an expiry whose removal failed) keeps its reason.
            reason = records.requested_end(info.session_id) or reason
            executor.remove_sandbox(info)
            records.finish(info.session_id, "TERMINATED", reason)
        if now - self._last_prune > PRUNE_EVERY:
            self._last_prune = now
            records.prune(max(config.record_ttl, config.run_timeout + config.idle_timeout + 60))

    def _pooled_is_dead(self, info: SandboxInfo, now: float) -> bool:
        """A pooled sandbox that stopped, never started, or was left half taken by a dead taker."""
        if info.exited:
            return True
        return (not info.running or info.claimed) and now - info.created_at > STUCK

    def _verdict(self, info: SandboxInfo, now: float, mine: set[str]) -> str | None:
        engine = self.engine
        config = engine.config
        if not info.claimed:
            # A pooled sandbox taken for a session is older than the session: ask the record.
            record = engine.records.read(info.session_id)
            created = record.created_at if record is not None else info.created_at
            return "idle_timeout" if now - created > config.idle_timeout else None
        owner = engine.executor.owner_of(info)
        if owner == engine.owner:
            return None if info.session_id in mine else "internal_error"
        if owner is None:
            # Between the two renames of a claim; only a claimer that died stays here.
            return (
                "internal_error" if now - info.created_at > config.idle_timeout + config.run_timeout else None
            )
        return None if owner_alive(owner) else "internal_error"
