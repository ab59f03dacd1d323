"""The Kubernetes executor's own objects, through the real server and the test API server:
hardened pods, a warm pool's pods taken by label, and a server that offers no v5 attach."""

from __future__ import annotations

import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import kube
import pytest
from harness import KUBE, STARTED_INSTANCES, shutdown, start_server
from websockets.exceptions import ConnectionClosedError

from sandbox_engine.config import Config
from sandbox_engine.executor import AlreadyClaimed
from sandbox_engine.languages import LANGUAGES
from sandbox_engine.specs import sandbox_spec

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.skipif(
        not KUBE, reason="runs under SANDBOX_ENGINE_EXECUTOR=kubernetes (make test-kubernetes)"
    ),
]

WAITING = "sandbox-engine/pool=1,sandbox-engine/session="


def wait_for(predicate, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while not (result := predicate()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return result


def running_pods(server, selector: str) -> list:
    return [p for p in kube.pods(server.instance, selector) if p.status.phase == "Running"]


@pytest.fixture(scope="module")
def warm(docker_client, tmp_path_factory):
    server = start_server(
        docker_client, tmp_path_factory, workers=2, idle_timeout=3, pool_size="python=2,python/tty=1"
    )
    yield server
    shutdown(server)


def test_pool_pods_are_hardened_in_kubernetes_terms(warm):
    assert wait_for(lambda: len(running_pods(warm, WAITING)) == 3)
    pods = running_pods(warm, WAITING)
    assert sorted(p.metadata.labels["sandbox-engine/tty"] for p in pods) == ["", "", "1"]
    pod = pods[0]
    spec, [box] = pod.spec, pod.spec.containers
    assert (spec.restart_policy, spec.automount_service_account_token, spec.enable_service_links) == (
        "Never",
        False,
        False,
    )
    assert spec.active_deadline_seconds > 0
    assert spec.security_context.run_as_non_root and spec.security_context.run_as_user == 10001
    assert spec.security_context.seccomp_profile.type == "RuntimeDefault"
    security = box.security_context
    assert security.read_only_root_filesystem and security.allow_privilege_escalation is False
    assert security.capabilities.drop == ["ALL"]
    assert box.resources.requests == {"cpu": "50m", "memory": str(32 * 1024**2)}
    assert box.resources.limits == {
        "cpu": "500m",
        "memory": str(256 * 1024**2),
        "ephemeral-storage": str(64 * 1024**2),
    }
    assert {(v.name, v.empty_dir.medium, v.empty_dir.size_limit) for v in spec.volumes} == {
        ("workspace", "Memory", str(64 * 1024**2)),
        ("tmp", "Memory", str(64 * 1024**2)),
    }
    assert box.stdin and box.stdin_once
    # The container the test API server made of it, as Docker holds it.
    [container] = [c for c in warm.containers() if c["Names"][0].lstrip("/") == pod.metadata.name]
    host = warm.docker.api.inspect_container(container["Id"])["HostConfig"]
    assert host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"] and host["NetworkMode"] == "none"
    assert host["Memory"] == 256 * 1024**2


def test_a_tty_session_takes_a_tty_pod_by_its_label(warm):
    assert wait_for(lambda: len(running_pods(warm, WAITING)) == 3)
    response = warm.post(
        "import os, sys\nprint(sys.stdin.isatty(), tuple(os.get_terminal_size()))", tty=True, cols=91, rows=33
    )
    session_id = response.json()["sessionId"]
    # Taken in the state store (its record names the pod); its labels follow the client's claim.
    name = warm.record(session_id)["sandbox"]["id"]
    assert name.startswith(f"se-{warm.instance}-pool-")
    assert name in {p.metadata.name for p in kube.pods(warm.instance, "sandbox-engine/tty=1")}
    with warm.attach(session_id) as ws:
        assert ws.read_to_end(20).text() == "True (91, 33)\r\n"
    # Refilled: a new pod, not the taken one, which goes (with the labels it kept, see claims)
    # once sessions stop arriving (see removals).
    waiting = lambda: {p.metadata.name for p in running_pods(warm, WAITING)}  # noqa: E731
    assert wait_for(lambda: len(waiting()) == 3 and name not in waiting())


def test_an_api_server_without_v5_attach_is_refused_in_words(docker_client, tmp_path_factory, monkeypatch):
    """Before v5.channel.k8s.io a client cannot close stdin: the session fails, saying why."""
    with kube.api_server(str(tmp_path_factory.mktemp("kubeapi-v4")), protocols="v4.channel.k8s.io") as config:
        monkeypatch.setenv(kube.KUBECONFIG_ENV, config)
        server = start_server(docker_client, tmp_path_factory, workers=1)
        try:
            with server.attach(server.create("print('never')")) as ws:
                with pytest.raises(ConnectionClosedError) as closed:
                    ws.read_to_end(30)
            assert closed.value.rcvd.code == 1011
            assert "without v5.channel.k8s.io (offered: v4.channel.k8s.io)" in closed.value.rcvd.reason
        finally:
            shutdown(server)


@pytest.fixture
def executor():
    """The executor itself, on an instance of its own, its pods removed after the test."""
    from sandbox_engine.kube_executor import KubeExecutor

    made = KubeExecutor(f"t{uuid.uuid4().hex[:10]}", kubeconfig=os.environ[kube.KUBECONFIG_ENV])
    STARTED_INSTANCES.add(made.instance)
    yield made
    for info in made.list():
        made.remove_sandbox(info)
    made.close()


def test_of_racing_claims_exactly_one_wins(executor):
    """A claim is a label patch made with the pod's resourceVersion: 409 for the rest. Here a
    pool's pod taken in the state store (its reference names it) is claimed by six at once."""
    spec = sandbox_spec(Config(), LANGUAGES["python"], None, False)
    pooled = executor.create(spec)
    assert pooled.running and pooled.name == pooled.id
    [info] = [i for i in executor.list() if i.waiting]
    assert info.ref.id == pooled.id
    winner = str(uuid.uuid4())

    def claim(owner: str) -> str:
        try:
            executor.claim(winner, owner, pooled)
        except AlreadyClaimed:
            return "refused"
        return owner

    with ThreadPoolExecutor(6) as threads:
        claims = list(threads.map(claim, [f"p{n}" for n in range(6)]))
    [owner] = [c for c in claims if c != "refused"]
    [claimed] = [i for i in executor.list() if i.session_id == winner]
    assert claimed.claimed and claimed.owner == owner and not claimed.pooled
