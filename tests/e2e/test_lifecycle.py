"""Cleanup and failure: disconnects, shutdown signals, crashes, several workers, Docker going away."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import requests
from dockerproxy import DockerProxy
from harness import start_server

# Every test here runs a real server on the real Docker daemon.
pytestmark = [pytest.mark.docker, pytest.mark.slow]

SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(120)"


def wait_for(predicate, timeout: float = 10, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(interval)
    return predicate()


def session_containers(server, session_id: str) -> list:
    return server.session_containers(session_id)


def test_disconnect_ends_session_and_removes_container_quickly(server):
    session_id = server.create(SLEEPER)
    ws = server.attach(session_id)
    ws.read_stdout_until("up")
    assert session_containers(server, session_id)
    ws.ws.close()
    closed_at = time.monotonic()
    assert wait_for(lambda: not session_containers(server, session_id), timeout=5)
    assert time.monotonic() - closed_at < 3
    info = wait_for(
        lambda: server.session(session_id)["state"] == "TERMINATED" and server.session(session_id)
    )
    assert info["reason"] == "client_disconnected"


def test_two_workers_serve_sessions_created_on_either(server):
    """POST and WebSocket land on whichever worker accepts them; every session must work, and
    both workers must have run some (the kernel picks the worker, so a round may go to one)."""
    owners: set[str] = set()
    for _ in range(3):
        results: dict[int, str] = {}
        all_running = threading.Barrier(12, timeout=30)

        def one(i: int, results: dict = results, all_running: threading.Barrier = all_running) -> None:
            session_id = server.create(f"print('session {i}:', input())")
            with server.attach(session_id) as ws:
                ws.read_until(lambda m: m["type"] == "state")
                if owner := server.owner(session_id):
                    owners.add(owner)
                all_running.wait()  # twelve connections open at once
                ws.send({"type": "input", "data": f"{i}\n"})
                results[i] = ws.read_to_end(20).text()

        threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results == {i: f"session {i}: {i}\n" for i in range(12)}
        if len(owners) == 2:
            break
    assert len(owners) == 2, f"expected both workers to run sessions, saw owners {owners}"


def test_sigterm_ends_sessions_with_server_shutdown(make_server):
    server = make_server(workers=2)
    running = server.attach(server.create(SLEEPER))
    running.read_stdout_until("up")
    waiting = server.create(SLEEPER)
    server.stop(signal.SIGTERM)
    assert running.read_to_end(10).final["reason"] == "server_shutdown"
    assert server.process.returncode == 0
    assert server.containers() == []
    assert waiting  # never attached: reaped by the master on exit


def test_sigint_ends_sessions_with_server_shutdown(make_server):
    server = make_server(workers=1)
    running = server.attach(server.create(SLEEPER))
    running.read_stdout_until("up")
    server.stop(signal.SIGINT)
    assert running.read_to_end(10).final["reason"] == "server_shutdown"
    assert server.containers() == []


def test_crash_recovery_reaps_what_a_killed_server_left(make_server, docker_client, tmp_path_factory):
    crashed = make_server(workers=2)
    running = crashed.attach(crashed.create(SLEEPER))
    running.read_stdout_until("up")
    crashed.create(SLEEPER)
    # kill -9 of master and workers (of every replica): nothing gets to clean up.
    for process in crashed.processes:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    # Its two sessions' sandboxes (one taken warm keeps its pool's name until a client claims
    # it), and its warm pool's, if it has one.
    left = {c["Id"] for c in crashed.containers()}
    assert len(left) >= 2 and crashed.sessions_containers()
    restarted = start_server(docker_client, tmp_path_factory, workers=2, instance=crashed.instance)
    try:
        assert not left & {c["Id"] for c in restarted.containers()}
        assert restarted.sessions_containers() == []
        assert restarted.run("print('back')").text() == "back\n"
    finally:
        restarted.stop()


def test_killed_worker_leaves_nothing_behind(make_server):
    """A worker killed with -9 mid-session: another worker's reaper removes its container."""
    server = make_server(workers=2)
    session_id = server.create(SLEEPER)
    ws = server.attach(session_id)
    ws.read_stdout_until("up")
    assert len(session_containers(server, session_id)) == 1
    owner_pid = int(server.owner(session_id)[1:])
    os.kill(owner_pid, signal.SIGKILL)
    assert wait_for(lambda: not session_containers(server, session_id), timeout=10)
    info = wait_for(
        lambda: server.session(session_id)["state"] == "TERMINATED" and server.session(session_id)
    )
    assert info["reason"] == "internal_error"


@pytest.fixture
def docker_proxy(tmp_path):
    proxy = DockerProxy(str(tmp_path / "docker.sock"))
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.mark.docker_only
def test_docker_going_away_mid_session(docker_proxy, make_server):
    # docker_proxy first: torn down last, so the server can still clean up through it.
    server = make_server(workers=1, docker_host=docker_proxy.url)
    session_id = server.create(SLEEPER)
    ws = server.attach(session_id)
    ws.read_stdout_until("up")

    docker_proxy.stop()
    final = ws.read_to_end(40).final
    assert final["state"] == "TERMINATED" and final["reason"] == "internal_error"
    assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
    ready = requests.get(f"{server.url}/readyz", timeout=40)
    assert ready.status_code == 503
    assert ready.json()["error"]["code"] == "runtime_unavailable"
    assert "Docker does not answer" in ready.json()["error"]["message"]
    refused = server.post("print(1)")
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "runtime_unavailable"

    docker_proxy.start()
    assert wait_for(lambda: requests.get(f"{server.url}/readyz", timeout=5).status_code == 200)
    assert server.run("print('resumed')").text() == "resumed\n"
    # The container Docker could not remove while away is removed once it is back.
    assert wait_for(lambda: not session_containers(server, session_id), timeout=10)
