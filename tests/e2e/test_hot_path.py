"""The warm path through the real server and Docker: what POST /session asks of Docker (nothing),
what a killed worker leaves (nothing), and a final state that does not wait for the removal."""

from __future__ import annotations

import math
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from dockerproxy import DockerProxy

# Every test here runs a real server on the real Docker daemon.
pytestmark = [pytest.mark.docker, pytest.mark.slow]

SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(120)"


def wait_for(predicate, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while not (result := predicate()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return result


def warm(server) -> int:
    return sum(level["warm"] for level in requests.get(f"{server.url}/pool", timeout=10).json()["pool"])


@pytest.fixture
def docker_proxy(tmp_path):
    proxy = DockerProxy(str(tmp_path / "docker.sock"))
    proxy.start()
    yield proxy
    proxy.stop()


def test_post_session_on_the_warm_path_makes_no_docker_call(docker_proxy, make_server):
    # docker_proxy first: torn down last, so the server can still clean up through it.
    server = make_server(workers=2, pool_size="python=6", docker_host=docker_proxy.url)
    assert wait_for(lambda: warm(server) == 6, timeout=60)
    seen, started = len(docker_proxy.requests), time.monotonic()
    sessions = [server.create(SLEEPER if n == 1 else "print('hi')") for n in range(6)]
    during, took = docker_proxy.requests[seen:], time.monotonic() - started
    # The reapers (each a listing a second, in each of the 2 workers) and the refiller (one
    # listing when woken) list the containers on their own; nothing else reaches Docker while
    # the sessions are created, and no listing per session either: no more listings than that
    # rhythm makes in the time the POSTs took (on a loaded machine they may take seconds).
    assert [r for r in during if "/containers/json" not in r] == [], during
    assert len(during) <= 2 * (math.ceil(took) + 1) + 1, (took, during)
    assert all(server.record(s)["sandbox"]["running"] for s in sessions), "every one was warm"
    # At attach the sandbox's first Docker call is the attach itself, and a session over within
    # the naming delay (see claims) is never renamed: its only other call is its removal.
    seen = len(docker_proxy.requests)
    with server.attach(sessions[0]) as ws:
        assert ws.read_to_end(20).text() == "hi\n"
    sandbox_id = server.record(sessions[0])["sandbox"]["id"]
    assert wait_for(
        lambda: any(r.startswith("DELETE") and sandbox_id in r for r in docker_proxy.requests[seen:])
    )
    calls = [r for r in docker_proxy.requests[seen:] if sandbox_id in r]
    assert calls[0].startswith("POST") and "/attach" in calls[0], calls
    assert [r.split(" ")[0] for r in calls] == ["POST", "DELETE"], calls
    # One still running after the delay gets its session's name then, off its client's path.
    seen = len(docker_proxy.requests)
    with server.attach(sessions[1]) as ws:
        ws.read_stdout_until("up")
        renamed = wait_for(lambda: [r for r in docker_proxy.requests[seen:] if "/rename" in r], timeout=10)
        assert renamed and sessions[1] in renamed[0], docker_proxy.requests[seen:]
        assert (
            server.owner(sessions[1])
            and "-pool-" not in server.session_containers(sessions[1])[0]["Names"][0]
        )
    for session_id in sessions[1:]:
        requests.delete(f"{server.url}/session/{session_id}", timeout=30)
    assert wait_for(lambda: server.sessions_containers() == [] and warm(server) == 6, timeout=60)


def test_a_cold_session_is_claimed_in_the_state_store_without_a_docker_rename(docker_proxy, make_server):
    server = make_server(workers=2, pool_size=0, docker_host=docker_proxy.url)
    terminal = server.post("print('hi')", tty=True, cols=80, rows=24).json()["sessionId"]
    sessions = [server.create("print('hi')"), terminal]
    # Made for its session under a name no session has yet, and taken in the store at once: its
    # claim is a rename there; Docker hears of the sandbox only to attach, start and remove it
    # (a session over within the naming delay is never renamed, see claims).
    for session_id in sessions:
        sandbox_id = server.record(session_id)["sandbox"]["id"]
        assert server.taken(session_id) == {sandbox_id}
        seen = len(docker_proxy.requests)
        with server.attach(session_id) as ws:
            assert ws.read_to_end(20).text().replace("\r\n", "\n") == "hi\n"
        assert wait_for(
            lambda sandbox_id=sandbox_id, seen=seen: any(
                r.startswith("DELETE") and sandbox_id in r for r in docker_proxy.requests[seen:]
            )
        )
        calls = [r for r in docker_proxy.requests[seen:] if sandbox_id in r]
        assert [r.split(" ")[0] for r in calls] == ["POST", "POST", "DELETE"], calls
        assert "/attach" in calls[0] and "/start" in calls[1], calls
    assert wait_for(lambda: server.sessions_containers() == [] and server.taken() == set(), timeout=30)


def test_a_killed_worker_leaves_no_taken_or_claimed_warm_sandbox_behind(make_server):
    server = make_server(workers=2, pool_size="python=3", idle_timeout=3)
    assert wait_for(lambda: warm(server) == 3, timeout=60)
    # One taken and attached (claimed by a worker), one taken and never attached.
    running = server.create(SLEEPER)
    waiting = server.create(SLEEPER)
    ids = {server.record(s)["sandbox"]["id"] for s in (running, waiting)}
    ws = server.attach(running)
    ws.read_stdout_until("up")
    # Killed before Docker's name follows (see claims): the claim is the state store's alone.
    owner = server.owner(running)
    assert owner and all("-pool-" in c["Names"][0] for c in server.session_containers(running))
    os.kill(int(owner[1:]), signal.SIGKILL)
    # The other worker's reaper: the orphaned claim at once, the unattached one at its timeout.
    assert wait_for(lambda: not ids & {c["Id"] for c in server.containers()}, timeout=30)
    assert server.session(running)["reason"] == "internal_error"
    assert server.session(waiting)["reason"] == "idle_timeout"
    # The pool is whole again, and what it offers works.
    assert wait_for(lambda: warm(server) == 3, timeout=60)
    assert server.run("print('back')").text() == "back\n"


def test_the_final_state_carries_the_exit_code_before_a_slow_removal(docker_proxy, make_server):
    server = make_server(workers=1, pool_size="python=1", docker_host=docker_proxy.url)
    assert wait_for(lambda: warm(server) == 1, timeout=60)
    docker_proxy.delays["DELETE"] = 3.0  # Docker takes its time removing the container
    session_id = server.create("import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)")
    with server.attach(session_id) as ws:
        ws.read_stdout_until("out")
        started = time.monotonic()
        transcript = ws.read_to_end(20)
        told_after = time.monotonic() - started
    final = transcript.final
    assert (final["state"], final["reason"], final["exitCode"]) == ("FINISHED", "exited", 3)
    assert transcript.text("stderr") == "err\n"
    assert final["usage"] and final["usage"]["wallTimeMs"] > 0
    assert told_after < 2.0, f"the final state waited {told_after:.1f} s, as long as the removal"
    record = server.session(session_id)
    assert (record["exitCode"], record["reason"]) == (3, "exited") and record["usage"]
    docker_proxy.delays.clear()
    assert wait_for(lambda: server.sessions_containers() == [] and not server.session_containers(session_id))


def test_a_warm_sandbox_that_died_after_its_take_fails_its_session_cleanly(make_server):
    # Chosen: the session fails with internal_error, rather than starting cold at attach (which
    # would need a Docker call on every warm attach to find out); its record says so, its exit
    # (Docker's 137 of the kill) is not passed off as the program's, and nothing leaks.
    server = make_server(workers=1, pool_size="python=1")
    assert wait_for(lambda: warm(server) == 1, timeout=60)
    session_id = server.create("print('never')")
    server.docker.api.kill(server.record(session_id)["sandbox"]["id"])
    with server.attach(session_id) as ws:
        transcript = ws.read_to_end(30)
    assert transcript.text() == ""
    final = transcript.final
    assert (final["state"], final["reason"], final["exitCode"]) == ("TERMINATED", "internal_error", None)
    assert server.session(session_id)["reason"] == "internal_error"
    assert wait_for(lambda: server.sessions_containers() == [] and warm(server) == 1, timeout=60)
    assert server.run("print('next')").text() == "next\n"


# stderr written last, and a lot of it, beside a little stdout: Docker copies the two streams
# apart, so the launcher's END mark on stderr (launch's END), not a quiet moment, says it is
# complete. Each session's transcript must hold every byte once, and no mark.
LAST_WORDS = {
    "python": (
        "import sys\nfor i in range(2000):\n    print(f'err {i:05d} ' + 'x' * 40, file=sys.stderr)\n"
        "print('done')\nprint('last', file=sys.stderr)\nsys.exit(5)\n"
    ),
    "javascript": (
        "const pad = (i) => String(i).padStart(5, '0');\n"
        "for (let i = 0; i < 2000; i++) process.stderr.write(`err ${pad(i)} ${'x'.repeat(40)}\\n`);\n"
        "console.log('done');\nprocess.stderr.write('last\\n');\nprocess.exitCode = 5;\n"
    ),
}
LAST_STDERR = "".join(f"err {i:05d} {'x' * 40}\n" for i in range(2000)) + "last\n"


@pytest.mark.parametrize("language", sorted(LAST_WORDS))
def test_stderr_written_last_arrives_whole_before_the_final_state(make_server, language):
    server = make_server(workers=2, pool_size=f"{language}=4")
    assert wait_for(lambda: warm(server) == 4, timeout=90)
    with ThreadPoolExecutor(4) as clients:
        transcripts = list(
            clients.map(lambda _: server.run(LAST_WORDS[language], language=language), range(16))
        )
    for transcript in transcripts:
        assert transcript.final["exitCode"] == 5, transcript.final
        assert transcript.text() == "done\n"
        assert transcript.text("stderr") == LAST_STDERR
    assert wait_for(lambda: server.sessions_containers() == [])
