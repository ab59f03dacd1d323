"""The end-to-end suite under the Kubernetes executor: the test API server, and what it holds.

With SANDBOX_ENGINE_EXECUTOR=kubernetes the suite starts tests/kubeapi/server.py once, points
every server it starts at it (SANDBOX_ENGINE_KUBECONFIG), and asks it for pods where a test needs
to know which sandbox is whose (a pool's pod keeps its name when a session takes it).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import kubernetes.client
import kubernetes.config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVER = os.path.join(ROOT, "tests", "kubeapi", "server.py")
KUBECONFIG_ENV = "SANDBOX_ENGINE_KUBECONFIG"


@contextmanager
def api_server(directory: str, protocols: str = "v5.channel.k8s.io") -> Iterator[str]:
    """The test API server on a free port, until the block ends; yields its kubeconfig's path."""
    path = os.path.join(directory, "kubeconfig")
    log = open(os.path.join(directory, "kubeapi.log"), "w")
    process = subprocess.Popen(
        [sys.executable, SERVER, "--port", "0", "--token", secrets.token_hex(16), "--kubeconfig", path]
        + ["--protocols", protocols],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        # Its first line is its address, once it listens and the kubeconfig is written.
        if not process.stdout.readline():
            raise RuntimeError(f"the test API server did not start; see {log.name}")
        yield path
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def pods(instance: str, selector: str) -> list:
    """The instance's pods that match a label selector, as the API lists them."""
    config = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=os.environ[KUBECONFIG_ENV], client_configuration=config)
    with kubernetes.client.ApiClient(config) as client:
        listed = kubernetes.client.CoreV1Api(client).list_namespaced_pod(
            "default", label_selector=f"sandbox-engine/instance={instance},{selector}"
        )
    return listed.items


def pod_names(instance: str, selector: str) -> list[str]:
    return [pod.metadata.name for pod in pods(instance, selector)]


def pod_labels(instance: str, selector: str, label: str) -> list[str]:
    """One label's value on each matching pod."""
    return [(pod.metadata.labels or {}).get(label, "") for pod in pods(instance, selector)]
