"""Fixtures for the end-to-end tests: servers that clean up, and a leak check for the suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import urlsplit

import described
import docker
import httpx
import kube
import pytest
import requests
from harness import (
    INSTANCE_LABEL,
    KUBE,
    STARTED_INSTANCES,
    Server,
    shutdown,
    start_server,
    stop_shared_redis,
)
from tcpproxy import TcpProxy


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keep each phase's report on the test, so a fixture can tell whether its test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session", autouse=True)
def answers_match_the_document() -> Iterator[None]:
    """Every answer a test server gives to requests or httpx (the tests, Judge0's SDK, a Piston
    client) is held against the server's OpenAPI document (described), by the client's own send."""
    sent_by_requests = requests.Session.send
    sent_by_httpx = httpx.Client.send

    def requests_send(self, request, **kwargs):
        response = sent_by_requests(self, request, **kwargs)
        if not described.watched(request.url or ""):
            return response
        described.check(
            described.Exchange(
                request.method or "GET",
                request.url or "",
                dict(request.headers),
                response.status_code,
                dict(response.headers),
                response.content,
            )
        )
        return response

    def httpx_send(self, request, **kwargs):
        response = sent_by_httpx(self, request, **kwargs)
        if not described.watched(str(request.url)):
            return response
        response.read()
        described.check(
            described.Exchange(
                request.method,
                str(request.url),
                dict(request.headers),
                response.status_code,
                dict(response.headers),
                response.content,
            )
        )
        return response

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(requests.Session, "send", requests_send)
        patch.setattr(httpx.Client, "send", httpx_send)
        yield


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """The real daemon. Missing, it skips locally and fails under CI=true."""
    client = docker.from_env()
    try:
        client.ping()
        client.images.get("sandbox-engine/python:latest")
    except Exception as exc:  # noqa: BLE001 - any failure means the same: no usable daemon
        message = f"the Docker daemon or the python image is not available ({exc}); run `make test`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    yield client
    client.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under the Kubernetes executor, tests of what only the Docker executor makes are skipped."""
    if not KUBE:
        return
    skip = pytest.mark.skip(reason="about the Docker executor's own objects")
    for item in items:
        if item.get_closest_marker("docker_only"):
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def kubernetes_api(tmp_path_factory) -> Iterator[None]:
    """Under the Kubernetes executor, the test API server every server of the suite talks to."""
    if not KUBE:
        yield
        return
    with kube.api_server(str(tmp_path_factory.mktemp("kubeapi"))) as kubeconfig:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(kube.KUBECONFIG_ENV, kubeconfig)
            yield


@pytest.fixture(scope="session")
def server(docker_client, tmp_path_factory) -> Iterator[Server]:
    """A two-worker server with short timeouts and a small output limit, shared by many tests."""
    server = start_server(
        docker_client,
        tmp_path_factory,
        workers=2,
        idle_timeout=3,
        run_timeout=12,
        output_limit=100000,
        max_sessions=40,
    )
    yield server
    shutdown(server)


@pytest.fixture
def make_server(docker_client, tmp_path_factory):
    """Servers with their own options for one test; each stopped and checked for leaks after."""
    servers: list[Server] = []

    def make(**options) -> Server:
        server = start_server(docker_client, tmp_path_factory, **options)
        servers.append(server)
        return server

    yield make
    for server in servers:
        shutdown(server)


@pytest.fixture
def proxy_to() -> Iterator:
    """TCP proxies in front of servers, which a test cuts as a network would (see tcpproxy)."""
    proxies: list[TcpProxy] = []

    def make(server: Server) -> TcpProxy:
        proxy = TcpProxy(urlsplit(server.url).port)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


@pytest.fixture(scope="session", autouse=True)
def redis_stopped_after_suite() -> Iterator[None]:
    """The replicas' Redis (SANDBOX_ENGINE_E2E_REPLICAS=2), if any server started it."""
    yield
    stop_shared_redis()


@pytest.fixture(scope="session", autouse=True)
def no_container_left_after_suite(request):
    """After the whole suite, no container of any test instance may remain on the daemon."""
    yield
    try:
        client = docker.from_env()
        left = [
            c
            for c in client.containers.list(all=True, filters={"label": "sandbox-engine"})
            if c.labels.get(INSTANCE_LABEL) in STARTED_INSTANCES
        ]
    except Exception:  # noqa: BLE001 - no daemon, nothing to check
        return
    for container in left:
        container.remove(force=True)
    assert not left, f"the suite left containers: {[c.name for c in left]}"
