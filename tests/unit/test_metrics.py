"""GET /metrics over a fake executor: each metric after known traffic, as Prometheus reads it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from fakes import FakeClient, FakeExecutor
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from sandbox_engine import create_app
from sandbox_engine.config import Config
from sandbox_engine.metrics import CONTENT_TYPE, clear_directory
from sandbox_engine.states import Reason
from sandbox_engine.worker import EXTENSION, Worker

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = "print('hello')\n"


@pytest.fixture
def make_app(tmp_path, executor: FakeExecutor) -> Iterator:
    apps: list[Flask] = []

    def make(**options) -> Flask:
        options = {"max_sessions": 3, **options}
        config = Config(state_dir=str(tmp_path / f"state{len(apps)}"), **options)
        app = create_app(config, executor=executor)
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield make
    executor.error = None
    for app in apps:
        app.extensions[EXTENSION].shutdown()


@pytest.fixture
def app(make_app) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def worker_of(app: Flask) -> Worker:
    return app.extensions[EXTENSION]


def scrape(client: FlaskClient) -> dict[tuple[str, tuple], float]:
    """Every sample of GET /metrics, by name and labels (sorted), parsed by prometheus_client."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == CONTENT_TYPE
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def create(client: FlaskClient, language: str = "python", code: str = PYTHON):
    return client.post("/session", json={"language": language, "code": code})


def run_to_end(app: Flask, executor: FakeExecutor, session_id: str, output: str, exit_code: int = 0) -> dict:
    ws = FakeClient()
    run = worker_of(app).engine.attach(session_id, ws)
    executor.sandboxes[session_id].stdout(output)
    executor.sandboxes[session_id].exit(exit_code)
    assert run.wait(5)
    return ws.final


def test_a_fresh_server_serves_every_family_with_nothing_counted(client):
    response = client.get("/metrics")
    names = {family.name for family in text_string_to_metric_families(response.get_data(as_text=True))}
    assert {
        "sandbox_engine_sessions_started",
        "sandbox_engine_sessions_ended",
        "sandbox_engine_runs_started",
        "sandbox_engine_runs_ended",
        "sandbox_engine_output_bytes",
        "sandbox_engine_session_first_output_seconds",
        "sandbox_engine_sessions_active",
        "sandbox_engine_runs_active",
        "sandbox_engine_pool_warm",
        "sandbox_engine_pool_size",
        "sandbox_engine_docker_failures",
        "sandbox_engine_requests_refused",
        "sandbox_engine_admitted",
        "sandbox_engine_max_sessions",
    } <= names
    samples = scrape(client)
    assert value(samples, "sandbox_engine_admitted") == 0
    assert value(samples, "sandbox_engine_max_sessions") == 3
    assert value(samples, "sandbox_engine_sessions_active") == 0


def test_sessions_started_and_ended_by_language_and_reason(app, client, executor):
    ids = [create(client).get_json()["sessionId"] for _ in range(3)]
    assert client.delete(f"/session/{ids[0]}").status_code == 204
    final = run_to_end(app, executor, ids[1], "hello\n", exit_code=3)
    assert (final["state"], final["exitCode"]) == ("FINISHED", 3)

    samples = scrape(client)
    assert value(samples, "sandbox_engine_sessions_started_total", language="python", start="cold") == 3
    assert value(samples, "sandbox_engine_sessions_ended_total", language="python", reason="killed") == 1
    assert value(samples, "sandbox_engine_sessions_ended_total", language="python", reason="exited") == 1
    assert value(samples, "sandbox_engine_output_bytes_total", kind="session", language="python") == 6
    # The third session waits for its client: admitted, not running.
    assert value(samples, "sandbox_engine_admitted") == 1
    assert value(samples, "sandbox_engine_sessions_active") == 0
    assert value(samples, "sandbox_engine_runs_started_total", language="python", start="cold") == 0


def test_an_end_is_counted_once_whoever_records_it_first(app, client, executor):
    session_id = create(client).get_json()["sessionId"]
    records = worker_of(app).engine.records
    assert records.finish(session_id, Reason.KILLED)
    assert not records.finish(session_id, Reason.IDLE_TIMEOUT)
    samples = scrape(client)
    assert value(samples, "sandbox_engine_sessions_ended_total", language="python", reason="killed") == 1
    assert (
        value(samples, "sandbox_engine_sessions_ended_total", language="python", reason="idle_timeout") == 0
    )


def test_a_running_session_is_active_until_it_ends(app, client, executor):
    session_id = create(client).get_json()["sessionId"]
    ws = FakeClient()
    run = worker_of(app).engine.attach(session_id, ws)
    assert value(scrape(client), "sandbox_engine_sessions_active") == 1
    executor.sandboxes[session_id].exit(0)
    assert run.wait(5)
    assert value(scrape(client), "sandbox_engine_sessions_active") == 0


def test_the_output_counted_is_what_the_client_was_sent(make_app, executor):
    app = make_app(output_limit=10)
    client = app.test_client()
    session_id = create(client).get_json()["sessionId"]
    final = run_to_end(app, executor, session_id, "0123456789abcdef")
    assert final["reason"] == "output_limit"
    samples = scrape(client)
    assert value(samples, "sandbox_engine_output_bytes_total", kind="session", language="python") == 10
    assert (
        value(samples, "sandbox_engine_sessions_ended_total", language="python", reason="output_limit") == 1
    )


def test_first_output_is_timed_once_per_session_cold_or_warm(make_app, executor):
    app = make_app(pool_size="python=1")
    client = app.test_client()
    worker_of(app).pool.refill()
    # No refill between the two: the second session is a cold one.
    client.get("/healthz")  # the first request starts the refiller; stopped here
    worker_of(app).pool.stop()
    warm = create(client).get_json()["sessionId"]
    cold = create(client).get_json()["sessionId"]
    for session_id in (warm, cold):
        ws = FakeClient()
        run = worker_of(app).engine.attach(session_id, ws)
        run.sandbox.stdout("a")
        run.sandbox.stderr("b")
        run.sandbox.exit(0)
        assert run.wait(5)
    samples = scrape(client)
    assert value(samples, "sandbox_engine_sessions_started_total", language="python", start="warm") == 1
    assert value(samples, "sandbox_engine_sessions_started_total", language="python", start="cold") == 1
    for start in ("warm", "cold"):
        assert value(samples, "sandbox_engine_session_first_output_seconds_count", start=start) == 1
        assert (
            value(samples, "sandbox_engine_session_first_output_seconds_bucket", start=start, le="+Inf") == 1
        )
        assert value(samples, "sandbox_engine_session_first_output_seconds_sum", start=start) < 5


def test_a_session_without_output_is_not_timed(app, client, executor):
    session_id = create(client).get_json()["sessionId"]
    run_to_end(app, executor, session_id, "")
    samples = scrape(client)
    assert value(samples, "sandbox_engine_session_first_output_seconds_count", start="cold") == 0


def test_the_pool_level_is_what_its_refiller_counted(make_app, executor):
    app = make_app(pool_size="python=2,python/tty=1")
    client = app.test_client()
    # Refilled before the first request starts the refiller's thread, then that stopped: the
    # counts are this refill's (one under way in the thread would hold the pool's lock, and a
    # refill here would count nothing).
    worker_of(app).pool.refill()
    client.get("/healthz")
    worker_of(app).pool.stop()
    samples = scrape(client)
    assert value(samples, "sandbox_engine_pool_size", language="python", tty="false") == 2
    assert value(samples, "sandbox_engine_pool_size", language="python", tty="true") == 1
    assert value(samples, "sandbox_engine_pool_warm", language="python", tty="false") == 2
    assert value(samples, "sandbox_engine_pool_warm", language="python", tty="true") == 1
    create(client)
    # The next count of the pool (a refill, or GET /pool) sees the sandbox taken.
    assert client.get("/pool").status_code == 200
    assert value(scrape(client), "sandbox_engine_pool_warm", language="python", tty="false") == 1


def test_batch_runs_are_counted_as_runs(app, client, executor):
    engine = worker_of(app).engine
    run_id = engine.create_session("python", PYTHON, batch=True)
    with engine.batch_sandbox(run_id):
        assert value(scrape(client), "sandbox_engine_runs_active") == 1
    engine.records.finish(run_id, Reason.EXITED, exit_code=0, output_bytes=12)
    samples = scrape(client)
    assert value(samples, "sandbox_engine_runs_active") == 0
    assert value(samples, "sandbox_engine_runs_started_total", language="python", start="cold") == 1
    assert value(samples, "sandbox_engine_runs_ended_total", language="python", reason="exited") == 1
    assert value(samples, "sandbox_engine_output_bytes_total", kind="run", language="python") == 12
    assert value(samples, "sandbox_engine_sessions_started_total", language="python", start="cold") == 0


def test_refusals_are_counted_by_api_and_code(make_app, executor):
    app = make_app(max_sessions=1)
    client = app.test_client()
    assert create(client, language="cobol").status_code == 400
    assert create(client).status_code == 201
    assert create(client).status_code == 429
    assert client.get("/no/such/route").status_code == 404
    assert client.get("/ws/session/" + "0" * 8).status_code == 404
    assert client.post("/api/v2/execute", json={"language": "cobol", "files": []}).status_code == 400
    hello = {"language": "python", "version": "*", "files": [{"content": "1"}]}
    assert client.post("/api/v2/execute", json=hello).status_code == 429
    assert client.get("/judge0/submissions/nope").status_code == 404
    assert client.post("/judge0/submissions", json={"language_id": 71, "source_code": "1"}).status_code == 503
    samples = scrape(client)
    name = "sandbox_engine_requests_refused_total"
    assert value(samples, name, api="sandbox", code="unknown_language") == 1
    assert value(samples, name, api="sandbox", code="at_capacity") == 1
    assert value(samples, name, api="sandbox", code="not_found") == 2
    assert value(samples, name, api="piston", code="invalid_request") == 1
    assert value(samples, name, api="piston", code="at_capacity") == 1
    assert value(samples, name, api="judge0", code="not_found") == 1
    # Judge0 says "queue is full" with a 503: counted by what it was.
    assert value(samples, name, api="judge0", code="at_capacity") == 1
    total = sum(v for (n, _), v in samples.items() if n == name)
    assert total == 8


def test_a_runtime_that_is_down_is_counted_by_its_code(client, executor):
    from sandbox_engine.executor import RuntimeUnavailable

    executor.error = RuntimeUnavailable("Docker does not answer")
    assert create(client).status_code == 503
    executor.error = None
    samples = scrape(client)
    assert (
        value(samples, "sandbox_engine_requests_refused_total", api="sandbox", code="runtime_unavailable")
        == 1
    )


class Broken:
    """A metric whose file cannot grow (a full disk)."""

    def labels(self, *values: str):
        raise OSError(28, "No space left on device")


def test_a_count_that_fails_never_fails_what_it_counts(app, client, executor, caplog):
    metrics = worker_of(app).metrics
    metrics._started = {False: Broken(), True: Broken()}
    metrics._first_output = metrics._output = Broken()
    session_id = create(client).get_json()["sessionId"]
    final = run_to_end(app, executor, session_id, "hi\n")
    assert (final["state"], final["reason"]) == ("FINISHED", "exited")
    said = [r for r in caplog.records if "could not be counted" in r.getMessage()]
    assert len(said) == 1
    ended = value(scrape(client), "sandbox_engine_sessions_ended_total", language="python", reason="exited")
    assert ended == 1


def test_the_multiprocess_directory_is_emptied_at_start(tmp_path):
    path = tmp_path / "metrics"
    path.mkdir()
    (path / "counter_123.db").write_bytes(b"old")
    (path / "gauge_livesum_123.db").write_bytes(b"old")
    clear_directory(str(path))
    assert os.listdir(path) == []


def test_across_processes_counts_add_up_and_a_dead_processs_gauges_go(tmp_path):
    """prometheus_client's multiprocess mode as the server uses it, in processes of their own:
    two workers count, one dies and is marked dead, a third scrapes."""
    directory = str(tmp_path)
    count = textwrap.dedent(
        """
        import os, sys
        from sandbox_engine.metrics import Metrics
        metrics = Metrics()
        metrics.started("python", False, False)
        metrics.ended("python", False, "exited", 5)
        metrics.sessions_active(int(sys.argv[1]))
        metrics.pool_level("python", False, int(sys.argv[1]))
        print(os.getpid())
        """
    )
    scrape = textwrap.dedent(
        """
        import sys
        from sandbox_engine.metrics import Metrics, mark_dead
        mark_dead(int(sys.argv[1]))
        sys.stdout.write(Metrics().exposition().decode())
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory}

    def python(code: str, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    python(count, "2")
    dead = python(count, "5")
    samples = {}
    for family in text_string_to_metric_families(python(scrape, dead)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert value(samples, "sandbox_engine_sessions_started_total", language="python", start="cold") == 2
    assert value(samples, "sandbox_engine_output_bytes_total", kind="session", language="python") == 10
    # The live process's gauges only; the dead one's 5 is gone.
    assert value(samples, "sandbox_engine_sessions_active") == 2
