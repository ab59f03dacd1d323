"""The warm pool: sandboxes created, started and hardened ahead of time, each waiting for one
program, so that a session skips the runtime's create and start.

Single use: a pooled sandbox becomes one session's and is removed with it. Every worker runs
a refiller, but only the one holding the pool's lock refills at a time, so the workers share
one pool instead of each keeping its own; any worker may take from it. The pool's members are
known in the state store (see pool_members): the refiller offers a sandbox there once it is
started and ready, and withdraws those that died, so that a session takes one without asking
the runtime.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable

from .executor import Executor, ExecutorError, SandboxSpec
from .pool_members import Members
from .statedir import touch

log = logging.getLogger(__name__)

# Refill at least this often even when nobody takes from the pool (a sandbox may die).
INTERVAL = 2.0
# Starting a container costs the machine a core for a good part of 100 ms: while sessions keep
# arriving, refilling waits for this much quiet, unless the pool is empty.
QUIET = 0.5


class Pool:
    def __init__(
        self,
        executor: Executor,
        spec_for: Callable[[str, bool], SandboxSpec],
        sizes: dict[tuple[str, bool], int],
        capacity: int,
        state_dir: str,
        members: Members,
        on_level: Callable[[str, bool, int], None] = lambda language, tty, warm: None,
    ) -> None:
        """`spec_for(language, tty)` describes a warm sandbox; `capacity` bounds the sandboxes of
        the instance, warm or not; `state_dir` is shared by the server's workers; `on_level` is
        told how many sandboxes of a (language, tty) wait whenever they are counted."""
        self.executor = executor
        self.spec_for = spec_for
        self.sizes = sizes
        self.capacity = capacity
        self.members = members
        self.on_level = on_level
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._took_path = os.path.join(state_dir, ".pool.took")

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="se-pool", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop refilling and wait for a refill under way to finish its current sandbox."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("pool: the refiller did not stop within %.0f s", timeout)
            self._thread = None

    def wake(self) -> None:
        """A session took a sandbox: refill once things are quiet (in every worker's view:
        the time of the last take is a file's mtime in the shared state directory)."""
        touch(self._took_path)
        os.utime(self._took_path)
        self._wake.set()

    def quiet_for(self) -> float:
        """Seconds since a session last took a warm sandbox, in any worker."""
        try:
            return time.time() - os.stat(self._took_path).st_mtime
        except FileNotFoundError:
            return QUIET

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refill()
            except ExecutorError as exc:
                log.debug("pool: runtime unavailable: %s", exc)
            except Exception:
                log.exception("pool refill failed")
            self._wake.wait(INTERVAL)
            self._wake.clear()
            quiet_for = self.quiet_for()
            if quiet_for < QUIET and not self._stop.is_set():
                self._stop.wait(QUIET - quiet_for)

    def levels(self) -> list[dict]:
        """Each warm pool's size and how many of its sandboxes wait now: offered in the store and
        running, from a fresh listing (this is no session's path)."""
        running = {info.ref.id for info in self.executor.list() if info.running}
        warm = Counter((ref.language, ref.tty) for ref in self.members.waiting() if ref.id in running)
        self._report(warm)
        return [
            {"language": language, "tty": tty, "size": size, "warm": warm[(language, tty)]}
            for (language, tty), size in self.sizes.items()
        ]

    def _report(self, warm: Counter) -> None:
        for language, tty in self.sizes:
            self.on_level(language, tty, warm[(language, tty)])

    def refill(self) -> int:
        """Create what the pool lacks, one sandbox at a time, while there is room. Returns how many."""
        with self.members.refilling() as held:
            return self._refill() if held else 0  # else another worker (or replica) is refilling

    def _refill(self) -> int:
        live = [info for info in self.executor.list() if not info.exited]
        running = {info.ref.id for info in live if info.running}
        warm: Counter = Counter()
        # Only the refiller (one at a time, under the lock) offers sandboxes: none was offered
        # since the listing, so a member missing from it died.
        for ref in self.members.waiting():
            if ref.id in running:
                warm[(ref.language, ref.tty)] += 1
            elif self.members.drop(ref.id):
                log.info("pool: withdrew a warm sandbox that is no longer running (%s)", ref.id[:12])
        self._report(warm)
        room = self.capacity - len(live)
        created = 0
        for (language, tty), target in self.sizes.items():
            for _ in range(target - warm[(language, tty)]):
                urgent = warm[(language, tty)] == 0
                if room <= 0 or self._stop.is_set() or not (urgent or self.quiet_for() >= QUIET):
                    return created
                self.members.add(self.executor.create(self.spec_for(language, tty)))
                warm[(language, tty)] += 1
                self.on_level(language, tty, warm[(language, tty)])
                created += 1
                room -= 1
        return created
