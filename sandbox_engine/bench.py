"""`sandbox-engine bench`: start-up latency over the public API, end to end.

Measures what a user waits for: from POST /session to the first `stdout` message on the
WebSocket, for a Python `print('hi')`, one session after another.
"""

from __future__ import annotations

import json
import statistics
import time

import requests
from websockets.sync.client import connect


def first_output_ms(server: str, code: str = "print('hi')", language: str = "python") -> float:
    started = time.perf_counter()
    response = requests.post(f"{server}/session", json={"language": language, "code": code}, timeout=30)
    response.raise_for_status()
    session_id = response.json()["sessionId"]
    ws_url = "ws" + server[len("http") :] + f"/ws/session/{session_id}"
    first = None
    with connect(ws_url, open_timeout=30) as ws:
        for raw in ws:
            message = json.loads(raw)
            if message["type"] == "stdout" and first is None:
                first = (time.perf_counter() - started) * 1000
            if message["type"] == "state" and message["state"] in ("FINISHED", "TERMINATED"):
                break
    if first is None:
        raise RuntimeError(f"session {session_id} ended without output")
    return first


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run(server: str, runs: int) -> dict:
    first_output_ms(server)  # warm-up: connections, caches
    samples = [first_output_ms(server) for _ in range(runs)]
    return {
        "runs": runs,
        "median_ms": round(statistics.median(samples), 1),
        "p99_ms": round(percentile(samples, 99), 1),
        "min_ms": round(min(samples), 1),
        "max_ms": round(max(samples), 1),
    }


def main(server: str, runs: int) -> int:
    result = run(server.rstrip("/"), runs)
    print(f"time to first output, print('hi'), {result['runs']} sequential sessions:")
    print(
        f"  median {result['median_ms']} ms   p99 {result['p99_ms']} ms   "
        f"min {result['min_ms']} ms   max {result['max_ms']} ms"
    )
    return 0
