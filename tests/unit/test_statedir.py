"""The state directory is private: 0700 directories, 0600 files, whatever the umask (issue 9.8)."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator

import pytest
from fakes import FakeClient, FakeExecutor

from sandbox_engine import create_app
from sandbox_engine.cli import main
from sandbox_engine.config import Config
from sandbox_engine.statedir import StateDirectoryError, instance_directory
from sandbox_engine.states import Reason
from sandbox_engine.worker import EXTENSION


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Files and directories would be world-readable and -writable but for the engine's modes."""
    before = os.umask(0)
    yield
    os.umask(before)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def modes(root) -> dict[str, int]:
    """Every directory and file under root (root included), by relative path."""
    found = {".": mode(root)}
    for directory, subdirectories, files in os.walk(root):
        for name in subdirectories + files:
            path = os.path.join(directory, name)
            found[os.path.relpath(path, root)] = mode(path)
    return found


def test_a_new_state_directory_and_everything_the_server_writes_in_it_are_private(
    tmp_path, executor: FakeExecutor, open_umask
):
    state_dir = tmp_path / "var" / "state"
    app = create_app(Config(state_dir=str(state_dir), pool_size="python=1"), executor=executor)
    worker = app.extensions[EXTENSION]
    client = app.test_client()
    try:
        assert worker.pool.refill() == 1
        ran = client.post("/session", json={"language": "python", "code": "print(input())"}).get_json()
        waiting = client.post("/session", json={"language": "python", "code": "print(1)"}).get_json()
        ws = FakeClient()
        run = worker.engine.attach(ran["sessionId"], ws)
        run.sandbox.exit(0)
        assert run.wait(5)
        worker.engine.records.request_end(waiting["sessionId"], Reason.KILLED)
    finally:
        worker.shutdown()
    found = modes(state_dir)
    instance = "default"
    # What the server wrote: each kind of file, so that the check below is not vacuous.
    for name in (
        f"{ran['sessionId']}.json",
        f"{waiting['sessionId']}.json",
        f"{waiting['sessionId']}.code",
        f"{waiting['sessionId']}.end",
        f".live/{waiting['sessionId']}",
        ".admit.lock",
        ".finish.lock",
        "pool/.lock",
        ".pool.took",
    ):
        assert os.path.join(instance, name) in found, sorted(found)
    assert {
        path: m for path, m in found.items() if m != (0o700 if os.path.isdir(state_dir / path) else 0o600)
    } == {}


def test_a_loose_instance_directory_of_ours_is_made_private(tmp_path, caplog):
    loose = tmp_path / "default"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    with caplog.at_level(logging.WARNING):
        assert instance_directory(str(tmp_path), "default") == str(loose)
    assert mode(loose) == 0o700
    assert "was mode 755" in caplog.text


def test_an_existing_state_directory_keeps_its_mode_unless_others_may_write_to_it(tmp_path):
    # --state-dir may be a directory shared with others (/var/lib, /tmp): its mode is the
    # operator's; only the instance's directory in it is the engine's.
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o755)
    instance_directory(str(shared), "a")
    assert (mode(shared), mode(shared / "a")) == (0o755, 0o700)
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    instance_directory(str(sticky), "a")
    assert (mode(sticky), mode(sticky / "a")) == (0o1777, 0o700)


@pytest.mark.parametrize("loose", [0o777, 0o775, 0o757])
def test_a_state_directory_others_may_write_to_is_refused(tmp_path, loose):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    os.chmod(state_dir, loose)
    with pytest.raises(StateDirectoryError, match=f"chmod go-w {state_dir}"):
        instance_directory(str(state_dir), "default")
    assert not (state_dir / "default").exists()


def test_an_instance_directory_of_another_user_is_refused(tmp_path, monkeypatch):
    instance_directory(str(tmp_path), "default")
    # As if another user had made it first: the server's uid is not its owner's.
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(tmp_path / "default").st_uid + 1)
    with pytest.raises(StateDirectoryError, match="belongs to uid"):
        instance_directory(str(tmp_path), "default")


def test_a_symbolic_link_or_a_file_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    (state_dir / "default").symlink_to(elsewhere)
    with pytest.raises(StateDirectoryError, match="not a directory"):
        instance_directory(str(state_dir), "default")
    (tmp_path / "file").write_text("")
    with pytest.raises(StateDirectoryError, match="not a directory"):
        instance_directory(str(tmp_path / "file"), "default")


def test_serve_refuses_a_state_directory_others_may_write_to_in_words(tmp_path, capsys, monkeypatch):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    os.chmod(state_dir, 0o777)

    def execv(*args: object) -> None:
        raise AssertionError("serve went on to start gunicorn")

    # A serve that is not refused replaces the test's process with gunicorn: never let it.
    monkeypatch.setattr(os, "execv", execv)
    assert main(["serve", "--state-dir", str(state_dir)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("sandbox-engine: the state directory") and "chmod go-w" in error
