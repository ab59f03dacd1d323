"""A real Debian redis-server on a free port, for the Redis store's tests and the end-to-end
suite's replicas (`make test` installs it, as it does dockerd)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def redis_server(directory: str) -> Iterator[str]:
    """A redis-server of its own, nothing saved to disk; its URL. Stopped (and waited for) after.
    Missing, it skips locally and fails under CI=true."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed; run `make test` (scripts/setup.sh test installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    port = _free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--dir", directory, "--logfile", os.path.join(directory, "redis.log")]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start; see {directory}/redis.log") from None
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# The unit suite's fixtures: one redis-server for the whole suite, each test module a client of
# its own, each test its own key prefix (an instance of its own), so that tests never meet.
@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    with redis_server(str(tmp_path_factory.mktemp("redis"))) as url:
        yield url


@pytest.fixture(scope="module")
def redis_client(redis_url) -> Iterator[redis.Redis]:
    made = redis.Redis.from_url(redis_url)
    yield made
    made.close()


@pytest.fixture
def redis_prefix() -> str:
    return f"se:t{uuid.uuid4().hex[:10]}:"
