"""The Kubernetes deployment (deploy/kubernetes/) and the sandbox pod, held against the API's
schemas (kubernetes-validate, strict: no unknown field) and against what the executor does."""

from __future__ import annotations

import glob
import os

import kubernetes_validate
import pytest
import yaml

from sandbox_engine import kube_api
from sandbox_engine.executor import Limits

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VERSION = "1.37.0"
SANDBOXES = "sandbox-engine-sandboxes"


def documents() -> list[dict]:
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, "deploy", "kubernetes", "*.yaml"))):
        with open(path) as f:
            found += [doc for doc in yaml.safe_load_all(f) if doc]
    return found


def one(kind: str, name: str) -> dict:
    [doc] = [d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_manifest_is_valid_kubernetes(doc):
    kubernetes_validate.validate(doc, VERSION, strict=True)


def test_the_validator_refuses_what_kubernetes_would():
    bad = one("Deployment", "sandbox-engine")
    bad = {**bad, "spec": {**bad["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, VERSION, strict=True)


def test_the_sandbox_pod_is_valid_kubernetes():
    pod = kube_api.pod_manifest(
        "se-default-pool-0123456789ab",
        "sandbox-engine/python:latest",
        ["python3", "-u", "-c", "..."],
        {"SANDBOX_SOURCE": "main.py"},
        Limits(memory=256 * 1024**2, cpus=0.5, pids=32, disk=64 * 1024**2),
        False,
        {"sandbox-engine/instance": "default", "sandbox-engine/session": ""},
        {"sandbox-engine/compile": '["gcc", "main.c"]'},
        kube_api.PodSecurity(SANDBOXES, runtime_class="gvisor"),
    )
    kubernetes_validate.validate(pod, VERSION, strict=True)


def test_the_role_grants_exactly_what_the_executor_does():
    role = one("Role", "sandbox-engine")
    assert role["metadata"]["namespace"] == SANDBOXES
    granted = {
        (resource, verb) for rule in role["rules"] for resource in rule["resources"] for verb in rule["verbs"]
    }
    assert granted == {
        ("pods", "create"),
        ("pods", "get"),
        ("pods", "list"),
        ("pods", "patch"),
        ("pods", "delete"),
        ("pods/attach", "create"),
        ("pods/exec", "create"),
        ("pods/log", "get"),
    }
    binding = one("RoleBinding", "sandbox-engine")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "sandbox-engine", "namespace": "sandbox-engine"}
    ]


def test_sandbox_pods_get_no_ingress_and_no_egress():
    policy = one("NetworkPolicy", "sandboxes-isolated")
    assert policy["metadata"]["namespace"] == SANDBOXES
    assert policy["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_the_server_runs_its_sandboxes_where_its_role_reaches_and_is_probed():
    [server] = one("Deployment", "sandbox-engine")["spec"]["template"]["spec"]["containers"]
    assert "--executor=kubernetes" in server["args"] and f"--namespace={SANDBOXES}" in server["args"]
    assert server["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
