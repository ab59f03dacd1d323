"""GET /metrics and the log of a real two-worker server after known traffic: the exact counts,
from whichever worker answers, through a worker killed with SIGKILL; the log's lines."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import pytest
import requests
from dockerproxy import DockerProxy
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# In every request's headers and every program: neither may reach the log.
SECRET = f"sk-e2e-{uuid.uuid4().hex}"
HEADERS = {"Authorization": f"Bearer {SECRET}"}
MARK = f"mark{uuid.uuid4().hex[:12]}"
HELLO = f"print('hi')  # {MARK}\n"
SLEEPER = "import time\nprint('up', flush=True)\nwhile True:\n    time.sleep(0.05)\n"
REFUSED = "sandbox_engine_requests_refused_total"


def scrape(server) -> dict[tuple[str, tuple], float]:
    response = requests.get(f"{server.url}/metrics", headers=HEADERS, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def counted(samples: dict) -> dict:
    """The samples that count something (counters, histograms' counts), without their zeros."""
    kept = {}
    for (name, labels), v in samples.items():
        if v and (name.endswith("_total") or name.endswith("_count")):
            kept[(name, labels)] = v
    return kept


def log_lines(server) -> list[dict]:
    with open(server.log) as f:
        return [json.loads(line) for line in f if line.strip()]


def requests_logged(server, route: str) -> list[dict]:
    return [line for line in log_lines(server) if line["message"] == "request" and line["route"] == route]


def worker_pids(server) -> set[int]:
    """The gunicorn master's workers (`serve` execs gunicorn: its pid is the master's)."""
    pids = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if parent == server.process.pid and b"reap" not in command:
            pids.add(int(pid))
    return pids


def wait_for(predicate, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while not (result := predicate()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return result


def every_worker_says(server, expected: dict, pids: set[int]) -> None:
    """Scrape until each of `pids` has answered (the log says which did); every answer is `expected`."""
    for _ in range(200):
        assert counted(scrape(server)) == expected
        answered = {line["pid"] for line in requests_logged(server, "/metrics")}
        if pids <= answered:
            return
    raise AssertionError(f"workers {pids - answered} never answered /metrics")


def traffic(server) -> None:
    """Known traffic: four Python sessions (one killed mid-run) and a Bash one, a batch run, and
    a refusal of each API's."""
    for _ in range(3):
        assert server.run(HELLO).final["reason"] == "exited"
    assert server.run(f"echo hi  # {MARK}", language="bash").final["reason"] == "exited"

    session_id = server.create(SLEEPER)
    with server.attach(session_id) as ws:
        ws.read_stdout_until("up")
        assert value(scrape(server), "sandbox_engine_sessions_active") == 1
        assert (
            requests.delete(f"{server.url}/session/{session_id}", headers=HEADERS, timeout=30).status_code
            == 204
        )
        assert ws.read_to_end().final["reason"] == "killed"

    ran = requests.post(
        f"{server.url}/run", json={"language": "python", "code": HELLO}, headers=HEADERS, timeout=90
    )
    assert ran.status_code == 200 and ran.json()["run"]["stdout"] == "hi\n"

    refusals = [
        requests.post(
            f"{server.url}/session", json={"language": "cobol", "code": "x"}, headers=HEADERS, timeout=30
        ),
        requests.get(f"{server.url}/session/{uuid.uuid4()}", headers=HEADERS, timeout=30),
        requests.post(
            f"{server.url}/api/v2/execute",
            json={"language": "cobol", "version": "*", "files": [{"content": "x"}]},
            headers=HEADERS,
            timeout=30,
        ),
        requests.post(
            f"{server.url}/judge0/submissions", json={"language_id": 9999, "source_code": "x"}, timeout=30
        ),
    ]
    assert [r.status_code for r in refusals] == [400, 404, 400, 422]


EXPECTED = {
    ("sandbox_engine_sessions_started_total", (("language", "python"), ("start", "cold"))): 4,
    ("sandbox_engine_sessions_started_total", (("language", "bash"), ("start", "cold"))): 1,
    ("sandbox_engine_sessions_ended_total", (("language", "python"), ("reason", "exited"))): 3,
    ("sandbox_engine_sessions_ended_total", (("language", "python"), ("reason", "killed"))): 1,
    ("sandbox_engine_sessions_ended_total", (("language", "bash"), ("reason", "exited"))): 1,
    ("sandbox_engine_runs_started_total", (("language", "python"), ("start", "cold"))): 1,
    ("sandbox_engine_runs_ended_total", (("language", "python"), ("reason", "exited"))): 1,
    # "hi\n" from each program, "up\n" from the one killed.
    ("sandbox_engine_output_bytes_total", (("kind", "session"), ("language", "python"))): 12,
    ("sandbox_engine_output_bytes_total", (("kind", "session"), ("language", "bash"))): 3,
    ("sandbox_engine_output_bytes_total", (("kind", "run"), ("language", "python"))): 3,
    ("sandbox_engine_session_first_output_seconds_count", (("start", "cold"),)): 5,
    (REFUSED, (("api", "sandbox"), ("code", "unknown_language"))): 1,
    (REFUSED, (("api", "sandbox"), ("code", "not_found"))): 1,
    (REFUSED, (("api", "piston"), ("code", "invalid_request"))): 1,
    (REFUSED, (("api", "judge0"), ("code", "invalid_request"))): 1,
}


def test_counts_are_exact_from_every_worker_and_survive_a_worker_killed(make_server):
    # No pool, whatever the environment says: every start is cold.
    server = make_server(workers=2, pool_size=0)
    workers = worker_pids(server)
    assert len(workers) == 2
    traffic(server)
    every_worker_says(server, EXPECTED, workers)
    samples = scrape(server)
    assert value(samples, "sandbox_engine_sessions_active") == 0
    assert value(samples, "sandbox_engine_runs_active") == 0
    assert value(samples, "sandbox_engine_admitted") == 0
    assert value(samples, "sandbox_engine_max_sessions") == 64

    # A worker that counted ends is killed; gunicorn starts another, and nothing it counted is lost.
    ended = [line["pid"] for line in log_lines(server) if line["message"] in ("session ended", "run ended")]
    victim = max(workers, key=ended.count)
    assert ended.count(victim) > 0
    os.kill(victim, signal.SIGKILL)
    replaced = wait_for(
        lambda: (pids := worker_pids(server)) and len(pids) == 2 and victim not in pids and pids
    )
    assert replaced, "gunicorn did not replace the killed worker"
    every_worker_says(server, EXPECTED, replaced)

    # And counting goes on, in the new worker as in the old.
    for _ in range(4):
        assert server.run(HELLO).final["reason"] == "exited"
    after = dict(EXPECTED)
    for key, more in (
        (("sandbox_engine_sessions_started_total", (("language", "python"), ("start", "cold"))), 4),
        (("sandbox_engine_sessions_ended_total", (("language", "python"), ("reason", "exited"))), 4),
        (("sandbox_engine_output_bytes_total", (("kind", "session"), ("language", "python"))), 12),
        (("sandbox_engine_session_first_output_seconds_count", (("start", "cold"),)), 4),
    ):
        after[key] += more
    every_worker_says(server, after, replaced)


def test_the_log_has_a_line_per_request_and_per_end_and_nothing_secret(make_server):
    server = make_server(workers=2, pool_size=0)
    traffic(server)
    response = requests.get(f"{server.url}/healthz", headers=HEADERS, timeout=10)
    assert len(response.headers["X-Request-Id"]) == 32

    lines = log_lines(server)  # every line parses: gunicorn's own are JSON too
    text = json.dumps(lines)
    assert SECRET not in text and MARK not in text and "hi\\n" not in text
    assert any(line["logger"] == "gunicorn.error" and "Booting worker" in line["message"] for line in lines)
    requests_ = [line for line in lines if line["message"] == "request"]
    assert all(
        set(line) >= {"time", "requestId", "key", "method", "route", "status", "durationMs"}
        for line in requests_
    )
    assert [line["requestId"] for line in requests_].count(response.headers["X-Request-Id"]) == 1
    sockets = [line for line in requests_ if line["route"] == "/ws/session/<session_id>"]
    # One line per WebSocket, at its end: the four sessions run to their end and the one killed.
    assert len(sockets) == 5 and {line["status"] for line in sockets} == {101}
    assert [line for line in requests_ if line["status"] == 400 and line["route"] == "/session"][0][
        "error"
    ] == ("unknown_language")
    ends = [line for line in lines if line["message"] in ("session ended", "run ended")]
    assert sorted((line["message"], line["language"], line["reason"]) for line in ends) == sorted(
        [("session ended", "python", "exited")] * 3
        + [
            ("session ended", "bash", "exited"),
            ("session ended", "python", "killed"),
            ("run ended", "python", "exited"),
        ]
    )
    finished = [line for line in ends if line["reason"] == "exited" and line["message"] == "session ended"]
    assert all(line["exitCode"] == 0 and line["outputBytes"] == 3 for line in finished)
    assert all(line["usage"]["wallTimeMs"] > 0 for line in finished)


def test_the_pool_level_and_warm_starts(make_server):
    server = make_server(workers=2, pool_size="python=2")
    pool = f"{server.url}/pool"
    assert wait_for(lambda: requests.get(pool, timeout=10).json()["pool"][0]["warm"] == 2, timeout=60)
    samples = scrape(server)
    assert value(samples, "sandbox_engine_pool_warm", language="python", tty="false") == 2
    assert value(samples, "sandbox_engine_pool_size", language="python", tty="false") == 2
    assert server.run(HELLO).final["reason"] == "exited"
    samples = scrape(server)
    assert value(samples, "sandbox_engine_sessions_started_total", language="python", start="warm") == 1
    assert value(samples, "sandbox_engine_session_first_output_seconds_count", start="warm") == 1
    # The refiller counts the pool again, and refills it.
    assert wait_for(
        lambda: value(scrape(server), "sandbox_engine_pool_warm", language="python", tty="false") == 2,
        timeout=60,
    )


@pytest.fixture
def docker_proxy(tmp_path):
    proxy = DockerProxy(str(tmp_path / "docker.sock"))
    proxy.start()
    yield proxy
    proxy.stop()


def test_docker_failures_are_counted_by_operation_and_the_text_log_is_for_people(docker_proxy, make_server):
    # docker_proxy first: torn down last, so the server can still clean up through it.
    server = make_server(workers=1, docker_host=docker_proxy.url, log_format="text")
    docker_proxy.stop()
    refused = server.post(HELLO)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "runtime_unavailable"
    samples = scrape(server)
    failures = "sandbox_engine_docker_failures_total"
    assert value(samples, failures, operation="create a sandbox", error="unreachable") == 1
    assert value(samples, REFUSED, api="sandbox", code="runtime_unavailable") == 1
    # The reaper's listing, every second, fails too.
    assert wait_for(
        lambda: value(scrape(server), failures, operation="list the sandboxes", error="unreachable") > 0
    )
    docker_proxy.start()
    assert wait_for(lambda: requests.get(f"{server.url}/readyz", timeout=5).status_code == 200)

    with open(server.log) as f:
        log = f.read()
    assert "INFO sandbox_engine.access: request " in log
    assert " route=/session status=503 " in log and "error=runtime_unavailable" in log
    assert not any(line.startswith("{") for line in log.splitlines())


def test_with_keys_metrics_need_the_admin_scope_and_the_log_names_keys_never_secrets(make_server):
    server = make_server(workers=2, pool_size=0)
    admin = server.make_key("prometheus", "--scopes", "admin")
    site = server.make_key("site", "--scopes", "session,run")
    metrics = f"{server.url}/metrics"
    assert requests.get(metrics, timeout=10).status_code == 401
    assert requests.get(metrics, headers={"Authorization": f"Bearer {site}"}, timeout=10).status_code == 403
    response = requests.get(metrics, headers={"Authorization": f"Bearer {admin}"}, timeout=10)
    assert response.status_code == 200
    session = requests.post(
        f"{server.url}/session",
        json={"language": "python", "code": HELLO},
        headers={"Authorization": f"Bearer {site}"},
        timeout=30,
    )
    assert session.status_code == 201

    samples = {}
    for family in text_string_to_metric_families(
        requests.get(metrics, headers={"Authorization": f"Bearer {admin}"}, timeout=10).text
    ):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert value(samples, REFUSED, api="sandbox", code="unauthorized") == 1
    assert value(samples, REFUSED, api="sandbox", code="forbidden") == 1
    assert value(samples, "sandbox_engine_admitted") == 1

    logged = [
        (line["route"], line["status"], line["key"])
        for line in log_lines(server)
        if line["message"] == "request"
    ]
    assert ("/metrics", 200, "prometheus") in logged and ("/session", 201, "site") in logged
    with open(server.log) as f:
        text = f.read()
    assert admin not in text and site not in text
    assert (
        requests.delete(
            f"{server.url}/session/{session.json()['sessionId']}",
            headers={"Authorization": f"Bearer {site}"},
            timeout=30,
        ).status_code
        == 204
    )
