"""Changing a running Docker sandbox's limits (the compile stage's to the run's) on the session's
path: written into its cgroup at once where the engine can (see cgroup_limits), with Docker's
update, which stays the record of them, following on a thread of its own; else Docker's update.
"""

from __future__ import annotations

import logging
import threading
import time

import docker

from . import cgroup_limits
from .docker_api import Failed, translated, update_limits
from .executor import ExecutorError, Limits

log = logging.getLogger(__name__)

# After Docker refused the record, how long a sandbox that runc found stopped may still be
# running to dockerd.
STOPPING = 1.0


def set_limits(
    api: docker.APIClient, container: str, pid: int | None, limits: Limits, failed: Failed
) -> None:
    """The sandbox's limits changed before this returns; `pid`: its first process's on the host."""
    if pid and cgroup_limits.write(pid, container, limits.memory, limits.cpus, limits.pids):
        thread = threading.Thread(
            target=_record,
            args=(api, container, limits, failed),
            name=f"se-limits-{container[:12]}",
            daemon=True,
        )
        thread.start()
        return
    update_limits(api, container, limits, failed)


def _record(api: docker.APIClient, container: str, limits: Limits, failed: Failed) -> None:
    """Docker's record of what the cgroup holds already (the same values: runc writes them again).
    A short program's sandbox may have stopped first (Docker then refuses: not running): its
    limits are no one's concern any more."""
    try:
        update_limits(api, container, limits, failed, ignore=(404, 409))
    except ExecutorError as exc:
        # runc may say so before dockerd does (it learns of the exit a moment later).
        deadline = time.monotonic() + STOPPING
        while _running(api, container) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _running(api, container):
            # The cgroup holds the limits: only what Docker reports of them is stale.
            log.warning("Docker's record of %s's limits was not updated: %s", container[:12], exc)
        else:
            log.debug("%s stopped before Docker's record of its limits: %s", container[:12], exc)


def _running(api: docker.APIClient, container: str) -> bool:
    try:
        with translated("inspect the sandbox", ignore=(404,)):
            return bool(api.inspect_container(container)["State"].get("Running"))
    except ExecutorError:
        return True  # unknown: as if it ran
    return False  # removed
