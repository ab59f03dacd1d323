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
from .states import Reason

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger(__name__)

INTERVAL = 1.0
PRUNE_EVERY = 60.0


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
        for info in executor.list():
            # Decided from what is true after the listing: a session claimed since the last pass
            # is live by the time its container is seen claimed.
            if executor.orphaned(info, self._alive, now):
                self._remove_orphan(info)
            elif not info.claimed and not info.pooled and self._expired(info, now):
                log.info("reaping session %s (idle_timeout)", info.session_id)
                engine.expire(info.session_id, Reason.IDLE_TIMEOUT)
        if now - self._last_prune > PRUNE_EVERY:
            self._last_prune = now
            records.prune(max(config.record_ttl, config.run_timeout + config.idle_timeout + 60))

    def _alive(self, owner: str, session_id: str) -> bool:
        if owner == self.engine.owner:
            return self.engine.is_live(session_id)
        return owner_alive(owner)

    def _remove_orphan(self, info: SandboxInfo) -> None:
        executor, records = self.engine.executor, self.engine.records
        if info.pooled:
            log.info("reaping pooled sandbox %s", info.name)
            executor.remove_sandbox(info)
            return
        # An ending already decided (a kill, an expiry whose removal failed) keeps its reason.
        reason = records.requested_end(info.session_id) or Reason.INTERNAL_ERROR
        log.info("reaping session %s (%s)", info.session_id, reason)
        records.end(info.session_id, reason, lambda: executor.remove_sandbox(info))

    def _expired(self, info: SandboxInfo, now: float) -> bool:
        """A session nobody attached to within the idle timeout."""
        # A pooled sandbox taken for a session is older than the session: ask the record.
        record = self.engine.records.read(info.session_id)
        created = record.created_at if record is not None else info.created_at
        return now - created > self.engine.config.idle_timeout
