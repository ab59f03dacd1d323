"""API keys, scopes and quotas on a real two-worker server: keys made and revoked by the CLI,
revokes that hold on every worker within a second, per-key limits exact under a burst across
workers, 429s with Retry-After, the session's WebSocket by its id alone, Judge0's X-Auth-Token
(through Judge0's own SDK), Piston's bare key (through a published Piston client), the CLI's
--key."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import judge0
import pytest
import requests
from harness import INTERACTIVE, VENV_BIN, Server, shutdown, start_server
from ultra_piston import File, PistonClient

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CLI = os.path.join(VENV_BIN, "sandbox-engine")
HELLO = {"language": "python", "code": "print('hello')\n"}
OPEN_WARNING = "no API key exists: anyone who reaches this server runs code on it"


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def fresh_get(url: str, **kwargs) -> requests.Response:
    """A request on a connection of its own, so that successive ones reach either worker."""
    with requests.Session() as session:
        return session.get(
            url, timeout=30, headers={"Connection": "close", **kwargs.pop("headers", {})}, **kwargs
        )


def wait_until(predicate, timeout: float = 5.0) -> float:
    """Seconds until predicate() held; fails after timeout."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, "not within the time"
        time.sleep(0.02)
    return time.monotonic() - start


@pytest.fixture(scope="module")
def keyed(docker_client, tmp_path_factory) -> Iterator[tuple[Server, dict[str, str]]]:
    """A two-worker server, open at start; then keys made by the CLI close it."""
    server = start_server(docker_client, tmp_path_factory, workers=2, idle_timeout=10, max_sessions=30)
    secrets = {
        "alice": server.make_key("alice"),
        "bob": server.make_key("bob"),
        "runner": server.make_key("runner", "--scopes", "run"),
    }
    # Within a second every worker requires a key.
    assert [fresh_get(f"{server.url}/languages").status_code for _ in range(8)] == [401] * 8
    yield server, secrets
    shutdown(server)


def test_an_open_server_says_so_once_at_start_and_the_first_key_closes_it(keyed):
    server, secrets = keyed
    with open(server.log) as f:
        assert f.read().count(OPEN_WARNING) == 1
    assert fresh_get(f"{server.url}/languages", headers=bearer(secrets["alice"])).status_code == 200
    assert fresh_get(f"{server.url}/readyz").status_code == 200
    assert fresh_get(f"{server.url}/").status_code == 200


def test_a_key_runs_a_session_whose_websocket_needs_only_its_id(keyed):
    server, secrets = keyed
    alice = bearer(secrets["alice"])
    response = requests.post(
        f"{server.url}/session", json={"language": "python", "code": INTERACTIVE}, headers=alice, timeout=30
    )
    assert response.status_code == 201, response.text
    session_id = response.json()["sessionId"]
    # No key on the WebSocket: the id is the capability.
    with server.attach(session_id) as ws:
        ws.read_stdout_until("Enter your name: ")
        ws.send({"type": "input", "data": "Ada\n"})
        transcript = ws.read_to_end()
    assert "Hello Ada" in transcript.text() and transcript.final["state"] == "FINISHED"
    # The session is alice's: bob and no key do not see it, on either worker.
    for _ in range(4):
        assert fresh_get(f"{server.url}/session/{session_id}", headers=alice).json()["reason"] == "exited"
        other = fresh_get(f"{server.url}/session/{session_id}", headers=bearer(secrets["bob"]))
        assert (other.status_code, other.json()["error"]["code"]) == (404, "not_found")
        assert fresh_get(f"{server.url}/session/{session_id}").status_code == 401
    gone = requests.delete(f"{server.url}/session/{session_id}", headers=bearer(secrets["bob"]), timeout=10)
    assert gone.status_code == 404


def test_a_key_without_the_scope_is_403_in_each_apis_shape(keyed):
    server, secrets = keyed
    runner = bearer(secrets["runner"])
    ours = requests.post(f"{server.url}/session", json=HELLO, headers=runner, timeout=10)
    assert ours.status_code == 403 and ours.json()["error"]["code"] == "forbidden"
    assert ours.headers["WWW-Authenticate"] == 'Bearer error="insufficient_scope", scope="session"'
    pool = fresh_get(f"{server.url}/pool", headers=bearer(secrets["alice"]))
    assert pool.status_code == 403
    piston = requests.get(f"{server.url}/api/v2/connect", headers=runner, timeout=10)
    assert piston.status_code == 403 and list(piston.json()) == ["message"]
    wrong = requests.post(
        f"{server.url}/judge0/submissions", json={}, headers={"X-Auth-Token": "se_x"}, timeout=10
    )
    assert wrong.status_code == 401 and list(wrong.json()) == ["error"]


def test_a_revoke_holds_on_every_worker_within_a_second(keyed):
    server, _ = keyed
    secret = server.make_key("short-lived")
    url = f"{server.url}/languages"
    # Both workers have read the key: many requests, each on a connection of its own, at once.
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lambda _: fresh_get(url, headers=bearer(secret)).status_code, range(16))) == {200}
        done = server.keys("revoke", "short-lived")
        revoked = time.monotonic()
        assert done.returncode == 0, done.stderr
        assert "short-lived" not in server.keys("list").stdout
        time.sleep(max(0.0, 1.0 - (time.monotonic() - revoked)))
        statuses = list(pool.map(lambda _: fresh_get(url, headers=bearer(secret)).status_code, range(24)))
    assert statuses == [401] * 24


def test_a_keys_limit_is_exact_under_a_burst_of_sessions_and_runs_across_workers(keyed):
    server, _ = keyed
    secret = server.make_key("burst", "--max-sessions", "3")
    headers = bearer(secret)
    barrier = threading.Barrier(16)
    sleeper = {"language": "python", "code": "import time\ntime.sleep(4)\n"}

    def create(i: int) -> requests.Response:
        path, body = ("/session", sleeper) if i % 2 else ("/run", {**sleeper, "wait": False})
        with requests.Session() as session:
            barrier.wait()
            return session.post(f"{server.url}{path}", json=body, headers=headers, timeout=60)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(create, range(16)))
    admitted = [a for a in answers if a.status_code in (201, 202)]
    refused = [a for a in answers if a.status_code == 429]
    assert (len(admitted), len(refused)) == (3, 13), [a.status_code for a in answers]
    for answer in refused:
        assert answer.json()["error"]["code"] == "quota_exceeded"
        assert int(answer.headers["Retry-After"]) >= 1
    # Another key is not held back meanwhile.
    other = requests.post(f"{server.url}/session", json=HELLO, headers=bearer(keyed[1]["bob"]), timeout=30)
    assert other.status_code == 201
    requests.delete(
        f"{server.url}/session/{other.json()['sessionId']}", headers=bearer(keyed[1]["bob"]), timeout=30
    )
    for answer in admitted:
        body = answer.json()
        if "sessionId" in body:
            gone = requests.delete(f"{server.url}/session/{body['sessionId']}", headers=headers, timeout=30)
            assert gone.status_code == 204
        else:
            wait_until(
                lambda b=body: (
                    fresh_get(f"{server.url}/run/{b['runId']}", headers=headers).json()["state"] == "finished"
                ),
                60,
            )
    # Ended, they make room again.
    again = requests.post(f"{server.url}/session", json=HELLO, headers=headers, timeout=30)
    assert again.status_code == 201, again.text
    requests.delete(f"{server.url}/session/{again.json()['sessionId']}", headers=headers, timeout=30)


def test_a_keys_rate_is_429_rate_limited_with_retry_after_across_workers(keyed):
    server, _ = keyed
    secret = server.make_key("paced", "--rate", "6")
    headers = bearer(secret)
    statuses = [fresh_get(f"{server.url}/languages", headers=headers) for _ in range(8)]
    assert [r.status_code for r in statuses] == [200] * 6 + [429] * 2
    refused = statuses[-1]
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    judge0_answer = fresh_get(f"{server.url}/judge0/about", headers={"X-Auth-Token": secret})
    assert judge0_answer.status_code == 429 and "Retry-After" in judge0_answer.headers
    assert list(judge0_answer.json()) == ["error"]


def test_judge0s_sdk_runs_code_with_x_auth_token(keyed):
    server, secrets = keyed
    client = judge0.Client(
        f"{server.url}/judge0",
        headers={"X-Auth-Token": secrets["runner"]},
        retry_strategy=judge0.MaxWaitTime(90),
    )
    done = judge0.run(client=client, source_code="print(input())", stdin="hi", language=judge0.PYTHON)
    assert done.status == judge0.Status.ACCEPTED and done.stdout == "hi\n"
    # Its submission is the runner's alone.
    other = fresh_get(
        f"{server.url}/judge0/submissions/{done.token}", headers={"X-Auth-Token": secrets["alice"]}
    )
    assert other.status_code == 404
    missing = fresh_get(f"{server.url}/judge0/languages")
    assert missing.status_code == 401 and "X-Auth-Token" in missing.json()["error"]


def test_a_published_piston_client_runs_code_with_its_api_key(keyed):
    server, secrets = keyed
    client = PistonClient(base_url=f"{server.url}/api/v2/", rate_limit=0, api_key=secrets["runner"])
    answer = client.post_execute(language="python", version="*", file=File(content="print(6 * 7)"))
    assert answer.run.stdout == "42\n"


def test_the_cli_runs_a_file_with_its_key(keyed, tmp_path):
    server, secrets = keyed
    program = tmp_path / "hello.py"
    program.write_text("print('hello from a key')\n")
    env = {k: v for k, v in os.environ.items() if k != "SANDBOX_ENGINE_KEY"}
    args = [CLI, "run", "--server", server.url, str(program)]
    with_key = subprocess.run(
        args,
        env={**env, "SANDBOX_ENGINE_KEY": secrets["alice"]},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )
    assert (with_key.returncode, with_key.stdout) == (0, b"hello from a key\n"), with_key.stderr
    without = subprocess.run(args, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert without.returncode == 2 and b"give --key, or set SANDBOX_ENGINE_KEY" in without.stderr


def test_auth_required_closes_a_server_without_any_key(make_server):
    server = make_server(workers=2, auth="required")
    assert fresh_get(f"{server.url}/languages").status_code == 401
    assert fresh_get(f"{server.url}/healthz").status_code == 200
    with open(server.log) as f:
        assert OPEN_WARNING not in f.read()
