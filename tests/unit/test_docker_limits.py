"""A Docker sandbox's limits changed on the session's path: into its cgroup at once, Docker's
record following off the path; Docker's update itself, on the path, where the cgroup is not ours."""

from __future__ import annotations

import logging
import threading
import time

import docker
import pytest
import requests

from sandbox_engine import cgroup_limits, docker_limits
from sandbox_engine.docker_api import uncounted
from sandbox_engine.executor import Limits

RUN = Limits(memory=256 << 20, cpus=0.5, pids=32, disk=64 << 20)


class Api:
    """The part of docker-py's APIClient that update_limits uses; each update waits for `release`."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.updates: list[tuple[str, dict]] = []
        self.done = threading.Event()

    def _url(self, template: str, container: str) -> str:
        return template.format(container)

    def _post_json(self, url: str, data: dict):
        self.release.wait(5)
        self.updates.append((url, data))
        self.done.set()
        return self

    def _raise_for_status(self, response) -> None:
        pass


@pytest.mark.parametrize("written", [True, False], ids=["cgroup", "docker"])
def test_the_limits_are_in_force_on_return_and_docker_records_them(monkeypatch, written):
    monkeypatch.setattr(cgroup_limits, "write", lambda pid, container, memory, cpus, pids: written)
    api = Api()
    if written:
        # Returns before Docker's update is made: it follows on a thread of its own.
        docker_limits.set_limits(api, "abc", 4242, RUN, uncounted)
        assert api.updates == []
        api.release.set()
        assert api.done.wait(5)
    else:
        api.release.set()
        docker_limits.set_limits(api, "abc", 4242, RUN, uncounted)
    body = {"Memory": RUN.memory, "MemorySwap": RUN.memory, "NanoCpus": 500_000_000, "PidsLimit": 32}
    assert api.updates == [("/containers/abc/update", body)]


def test_without_a_pid_docker_updates_on_the_path(monkeypatch):
    monkeypatch.setattr(cgroup_limits, "write", lambda *args: pytest.fail("no pid, no cgroup"))
    api = Api()
    api.release.set()
    docker_limits.set_limits(api, "abc", None, RUN, uncounted)
    assert len(api.updates) == 1


class Refusing(Api):
    """Docker refusing the update, its container running or not."""

    def __init__(self, running: bool) -> None:
        super().__init__()
        self.release.set()
        self.running = running

    def _post_json(self, url: str, data: dict):
        super()._post_json(url, data)
        response = requests.Response()
        response.status_code = 500
        raise docker.errors.APIError("runc did not terminate successfully: container not running", response)

    def inspect_container(self, container: str) -> dict:
        return {"State": {"Running": self.running}}


@pytest.mark.parametrize("running", [True, False])
def test_a_record_docker_refuses_is_a_warning_only_while_the_sandbox_runs(monkeypatch, caplog, running):
    monkeypatch.setattr(cgroup_limits, "write", lambda *args: True)
    monkeypatch.setattr(docker_limits, "STOPPING", 0.1)
    api = Refusing(running)
    with caplog.at_level(logging.DEBUG, logger="sandbox_engine.docker_limits"):
        docker_limits.set_limits(api, "abc", 4242, RUN, uncounted)
        assert api.done.wait(5)
        deadline = time.monotonic() + 5
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.01)
    # A short program's sandbox stops before Docker's record: nothing stale to warn of.
    assert [r.levelno for r in caplog.records] == [logging.WARNING if running else logging.DEBUG]
