"""A debugging hook, off unless asked for: a worker's memory as the soak compares it between phases.

With SANDBOX_ENGINE_MEMPROBE=<directory> in the server's environment, each gunicorn worker writes
`<directory>/<pid>-<n>.json` when sent SIGUSR2: its RSS, open fds, the engine's runs, live
objects counted by type after a full collection, and, when tracemalloc traces (PYTHONTRACEMALLOC),
where the memory allocated since the previous dump was allocated; and glibc's heap (in use, and
held free). Without the variable a worker
has no handler, and SIGUSR2 stops it: send it only to a server started with the variable set.
"""

from __future__ import annotations

import collections
import ctypes
import gc
import json
import os
import time
import tracemalloc

ENV = "SANDBOX_ENGINE_MEMPROBE"
# Set too: after each dump, glibc gives back what it holds free (malloc_trim), and the dump has
# the RSS after it.
TRIM_ENV = "SANDBOX_ENGINE_MEMPROBE_TRIM"


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks")
        + ("uordblks", "fordblks", "keepcost")
    ]


def malloc_facts() -> dict[str, int]:
    """glibc's heap: what it got from the system (arena, mmapped), what is in use, what it holds
    free. A high-water mark shows as free bytes held; a leak as bytes in use."""
    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return {}
    mallinfo2.restype = _Mallinfo2
    info = mallinfo2()
    return {"heap": info.arena, "mmapped": info.hblkhd, "in use": info.uordblks, "free held": info.fordblks}


def _trim() -> bool:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim(0) >= 0
    except (OSError, AttributeError):
        return False


def object_counts(top: int = 60) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        counts[f"{kind.__module__}.{kind.__qualname__}"] += 1
    return dict(counts.most_common(top))


class Probe:
    def __init__(self, directory: str, engine=None) -> None:
        self.directory = directory
        self.engine = engine
        self._count = 0
        self._snapshot: tracemalloc.Snapshot | None = None

    def facts(self) -> dict:
        gc.collect()
        facts: dict = {
            "pid": os.getpid(),
            "rss": rss_bytes(),
            "fds": len(os.listdir("/proc/self/fd")),
            "threads": len(os.listdir("/proc/self/task")),
            "malloc": malloc_facts(),
            "objects": len(gc.get_objects()),
            "types": object_counts(),
        }
        if self.engine is not None:
            facts["runs"] = len(self.engine._runs)
            facts["claiming"] = len(self.engine._claiming)
        if tracemalloc.is_tracing():
            snapshot = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)]
            )
            facts["traced"] = tracemalloc.get_traced_memory()[0]
            if self._snapshot is not None:
                diff = snapshot.compare_to(self._snapshot, "lineno")[:30]
                facts["grew"] = [
                    {"where": str(d.traceback), "size_diff": d.size_diff, "count_diff": d.count_diff}
                    for d in diff
                ]
            self._snapshot = snapshot
        # What the allocator gives back when asked to (free pages inside the heap too): the RSS
        # left is what is in use.
        if os.environ.get(TRIM_ENV):
            began = time.perf_counter()
            if _trim():
                facts["trim ms"] = (time.perf_counter() - began) * 1000
                facts["rss after trim"] = rss_bytes()
        return facts

    def dump(self) -> str:
        self._count += 1
        path = os.path.join(self.directory, f"{os.getpid()}-{self._count}.json")
        with open(path, "w") as f:
            json.dump(self.facts(), f, indent=1)
        return path


def install(engine=None) -> Probe | None:
    """In a gevent worker: dump on SIGUSR2, if the environment asks for it."""
    directory = os.environ.get(ENV)
    if not directory:
        return None
    import signal

    import gevent

    os.makedirs(directory, exist_ok=True)
    probe = Probe(directory, engine)
    gevent.signal_handler(signal.SIGUSR2, probe.dump)
    return probe
