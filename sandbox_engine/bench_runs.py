"""The batch runs' part of `sandbox-engine bench`: POST /run's latency, rate, tests and memory.

Measured from the client's side of POST /run on the same server (and warm pool) as the
interactive figures, so the two compare within one run.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlparse

import requests

from .bench_baselines import HELLO, Series, rss, server_pids
from .bench_rates import Rate, loops

CPP_SUM = "#include <iostream>\nint main() { long a, b; std::cin >> a >> b; std::cout << a + b << '\\n'; }\n"
TESTS = 10
# Requests held open at once while the server's memory is read.
WAITING = 50


def _post(http: requests.Session, server: str, body: dict) -> dict:
    response = http.post(f"{server}/run", json=body, timeout=300)
    response.raise_for_status()
    return response.json()


def hello_latency(server: str, runs: int) -> Series:
    """Seconds from POST /run to its answer, for print('hi'), one after another."""
    http = requests.Session()
    series = Series("POST /run, print('hi'), sequential (server)")
    for _ in range(runs):
        started = time.perf_counter()
        result = _post(http, server, {"language": "python", "code": HELLO})
        series.samples.append(time.perf_counter() - started)
        assert result["run"]["status"] == "ok", result
    return series


def rate(server: str) -> Rate:
    """Complete hello-world runs, CLIENTS at a time each posting one after another, over a first
    window from a full pool and a steady one after it (see bench_rates)."""

    def one() -> Callable[[], None]:
        http = requests.Session()
        return lambda: _post(http, server, {"language": "python", "code": HELLO})

    return loops(one)


def compile_once(server: str) -> dict:
    """One C++ request with TESTS test cases against TESTS separate requests of one run each."""
    http = requests.Session()
    tests = [{"id": str(i), "stdin": f"{i} {i}", "expectedOutput": f"{2 * i}\n"} for i in range(TESTS)]
    started = time.perf_counter()
    batch = _post(http, server, {"language": "cpp", "code": CPP_SUM, "tests": tests})
    together = time.perf_counter() - started
    assert all(t["verdict"] == "accepted" for t in batch["tests"]), batch
    started = time.perf_counter()
    for test in tests:
        single = _post(http, server, {"language": "cpp", "code": CPP_SUM, "stdin": test["stdin"]})
        assert single["run"]["stdout"] == test["expectedOutput"], single
    apart = time.perf_counter() - started
    return {
        "together": together,
        "apart": apart,
        "compile_ms": batch["compile"]["usage"]["wallTimeMs"],
        "runs_ms": sum(t["usage"]["wallTimeMs"] for t in batch["tests"]),
    }


def memory_while_waiting(server: str) -> dict:
    """The server's RSS before, while WAITING requests wait on sleeping programs, and after."""
    pids = server_pids(urlparse(server).port or 80)
    before = rss(pids)
    peak = [before]
    results: list[str] = []
    code = "import time\ntime.sleep(3)\nprint('done')\n"

    def one() -> None:
        try:
            results.append(
                _post(requests.Session(), server, {"language": "python", "code": code})["run"]["status"]
            )
        except requests.RequestException as exc:
            results.append(f"error: {exc}")

    threads = [threading.Thread(target=one) for _ in range(WAITING)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        peak.append(rss(pids))
        time.sleep(0.2)
    for thread in threads:
        thread.join()
    return {
        "before_mb": before / 2**20,
        "peak_mb": max(peak) / 2**20,
        "after_mb": rss(pids) / 2**20,
        "ok": results.count("ok"),
        "answers": len(results),
        # What the others were, so that a run that was not ok says how it ended.
        "others": "".join(f"; {n} {status}" for status, n in Counter(results).items() if status != "ok"),
    }


def measure(
    server: str, runs: int, session_rate: float, out: Callable[[str], None], quiet: Callable[[], object]
) -> tuple[list, list]:
    """Rows (name, Series) and figures/targets (name, value, ok or None) for the bench's tables.
    Each phase starts as the sessions' do, after `quiet` (pools full, the last phase's sandboxes
    removed): the runs per second are compared with the sessions', which start from a full pool."""
    out("measuring: batch runs, sequential")
    latency = hello_latency(server, runs)
    out("measuring: batch runs, sustained")
    quiet()
    per_second = rate(server)
    out(f"measuring: batch runs, C++ with {TESTS} tests")
    quiet()
    cpp = compile_once(server)
    out(f"measuring: batch runs, {WAITING} waiting at once")
    quiet()
    memory = memory_while_waiting(server)
    figures = [
        (
            f"complete hello-world runs per second (4 clients): first {per_second.window:.0f} s from a "
            f"full pool; steady, the {per_second.window:.0f} s after",
            f"{per_second.first:.1f}; {per_second.steady:.1f}",
            None,
        ),
        (
            f"C++, {TESTS} tests in one request / {TESTS} requests",
            f"{cpp['together'] * 1000:.0f} ms / {cpp['apart'] * 1000:.0f} ms "
            f"(its compile {cpp['compile_ms']:.0f} ms, its {TESTS} runs {cpp['runs_ms']:.0f} ms)",
            None,
        ),
        (
            f"server RSS before / while {WAITING} runs wait / after",
            f"{memory['before_mb']:.0f} / {memory['peak_mb']:.0f} / {memory['after_mb']:.0f} MB "
            f"({memory['ok']} of {memory['answers']} ok{memory['others']})",
            None,
        ),
    ]
    targets = [
        (
            "runs per second >= interactive sessions per second, steady",
            f"{per_second.steady:.1f} vs {session_rate:.1f}",
            per_second.steady >= session_rate,
        ),
        (
            f"{TESTS} tests compile once: one request < {TESTS} requests / 2",
            f"{cpp['together'] / cpp['apart']:.2f}x",
            cpp["together"] < cpp["apart"] / 2,
        ),
        (
            f"{WAITING} waiting runs: all answered, server RSS grows < 100 MB",
            f"{memory['answers']} answered, +{memory['peak_mb'] - memory['before_mb']:.0f} MB",
            memory["answers"] == WAITING and memory["peak_mb"] - memory["before_mb"] < 100,
        ),
    ]
    return [("POST /run hello world (warm pool)", latency)], figures + targets
