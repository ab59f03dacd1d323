"""The state directory through a real server: private to the server's user (issue 9.8)."""

from __future__ import annotations

import os
import stat
import subprocess
import time
import uuid

import pytest
import requests
from harness import STARTED_INSTANCES, VENV_BIN

# Every test here runs a real server on the real Docker daemon.
pytestmark = [pytest.mark.docker, pytest.mark.slow]


def modes(root) -> dict[str, int]:
    """Every directory and file under root (root included), by relative path."""
    found = {".": stat.S_IMODE(os.stat(root).st_mode)}
    for directory, subdirectories, files in os.walk(root):
        for name in subdirectories + files:
            path = os.path.join(directory, name)
            # A symbolic link's own mode means nothing (always 0777): what it names is checked.
            if not os.path.islink(path):
                found[os.path.relpath(path, root)] = stat.S_IMODE(os.lstat(path).st_mode)
    return found


def not_private(root) -> dict[str, str]:
    """What another local user could list or read: anything but 0700 directories, 0600 files."""
    wrong = {}
    for path, mode in modes(root).items():
        want = 0o700 if os.path.isdir(os.path.join(root, path)) else 0o600
        if mode != want:
            wrong[path] = f"{mode:o}"
    return wrong


def test_the_state_directory_and_every_file_in_it_are_private(make_server, tmp_path):
    state_dir = tmp_path / "state"  # missing: the server makes it
    server = make_server(state_dir=str(state_dir), pool_size="python=1")
    assert server.run("print('echo', input())", inputs=["hi\n"]).text() == "echo hi\n"
    # A session still running after the naming delay: Docker's name follows its claim (made in the
    # state directory), by a rename under a lock file.
    slow = 'read x; sleep 2.5; echo "echo $x"'
    assert server.run(slow, inputs=["hi\n"], language="bash").text() == "echo hi\n"
    waiting = server.create("print('waits for its client')")
    instance = state_dir / server.instance
    names = os.listdir(instance)
    # A record, a waiting program, a live mark, the lock files of admission, ends, claims and the
    # pool: each kind of file the server writes is there to be checked.
    assert {f"{waiting}.json", f"{waiting}.code", ".admit.lock", ".finish.lock"} <= set(names)
    assert ".lock" in os.listdir(instance / "pool")
    assert any(name.startswith(".rename-") for name in names) and os.listdir(instance / ".live")
    assert not_private(state_dir) == {}
    assert requests.delete(f"{server.url}/session/{waiting}", timeout=10).status_code == 204
    assert not_private(state_dir) == {}


def test_serve_refuses_a_state_directory_other_users_may_write_to(tmp_path):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    os.chmod(state_dir, 0o777)
    # Should it not be refused, it must not serve: an instance of its own, an address no one has.
    instance = f"t{uuid.uuid4().hex[:10]}"
    STARTED_INSTANCES.add(instance)
    serve = [os.path.join(VENV_BIN, "sandbox-engine"), "serve", "--bind", "192.0.2.1:8080"]
    serve += ["--instance", instance, "--state-dir", str(state_dir)]
    result = subprocess.run(serve, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("sandbox-engine: the state directory") and "chmod go-w" in result.stderr
    assert os.listdir(state_dir) == []


def test_ended_records_are_bounded_the_oldest_forgotten_first_live_ones_kept(make_server):
    server = make_server(max_records=2)
    waiting = server.create("print('waits for its client')")
    ended = []
    for n in range(4):
        session_id = server.create(f"print({n})")
        with server.attach(session_id) as ws:
            assert ws.read_to_end(30).text() == f"{n}\n"
        ended.append(session_id)

    def found(session_id: str) -> bool:
        return requests.get(f"{server.url}/session/{session_id}", timeout=10).status_code == 200

    # The reaper prunes on its next pass, every second.
    deadline = time.monotonic() + 10
    while any(found(session_id) for session_id in ended[:2]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [found(session_id) for session_id in ended] == [False, False, True, True]
    assert server.session(ended[3])["state"] == "FINISHED"
    assert server.session(waiting)["state"] == "CREATED"
    assert requests.delete(f"{server.url}/session/{waiting}", timeout=10).status_code == 204
