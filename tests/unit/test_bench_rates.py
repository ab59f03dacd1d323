"""The bench's rates: windows over completion times, and loops that fill them."""

import threading

from sandbox_engine import bench_rates
from sandbox_engine.bench_rates import Rate


def test_a_rate_counts_each_completion_in_its_own_window():
    rate = Rate(10.0, [0.5, 9.99, 10.0, 12.0, 19.5, 20.0, 31.0])
    assert rate.first == 0.2  # 2 in [0, 10)
    assert rate.steady == 0.3  # 3 in [10, 20): what completed after the second window is not counted
    assert rate.per_second(2) == 0.1


def test_loops_run_each_clients_own_iteration_until_the_windows_end(monkeypatch):
    monkeypatch.setattr(bench_rates, "WINDOW", 0.1)
    made: list[str] = []
    lock = threading.Lock()

    def one():
        with lock:
            made.append(threading.current_thread().name)  # each loop makes its own, in its thread
        return lambda: threading.Event().wait(0.01)

    rate = bench_rates.loops(one, windows=2, parallel=3)
    assert len(made) == 3 and len(set(made)) == 3
    assert rate.window == 0.1
    assert rate.first > 0 and rate.steady > 0
    assert rate.completed == sorted(rate.completed)
    assert max(rate.completed) < 0.2 + 0.05  # none starts after the deadline


def test_sessions_started_are_read_from_the_servers_metrics(monkeypatch):
    text = (
        "# TYPE sandbox_engine_sessions_started_total counter\n"
        'sandbox_engine_sessions_started_total{language="python",start="warm"} 472.0\n'
        'sandbox_engine_sessions_started_total{language="c",start="warm"} 3.0\n'
        'sandbox_engine_sessions_started_total{language="python",start="cold"} 350.0\n'
        'sandbox_engine_runs_started_total{language="python",start="cold"} 9.0\n'
    )

    class Answer:
        pass

    answer = Answer()
    answer.text = text
    monkeypatch.setattr(bench_rates.requests, "get", lambda url, timeout: answer)
    assert bench_rates.started("http://server") == {"warm": 475, "cold": 350}
