"""The Kubernetes wire as pure functions: a sandbox's pod, and the Status of a process's end."""

from __future__ import annotations

import json

from sandbox_engine import kube_api
from sandbox_engine.executor import Limits

LIMITS = Limits(memory=256 * 1024**2, cpus=0.5, pids=32, disk=64 * 1024**2)


def manifest(**security) -> dict:
    return kube_api.pod_manifest(
        "se-i-s",
        "sandbox-engine/python:latest",
        ["/bin/sh", "-c", "launch"],
        {"B": "2", "A": "1"},
        LIMITS,
        True,
        {"sandbox-engine/session": "s"},
        {"sandbox-engine/compile": ""},
        kube_api.PodSecurity("sandboxes", **security),
    )


def test_a_sandbox_pod_carries_the_hardening_in_kubernetes_terms():
    pod = manifest(deadline=600)
    spec = pod["spec"]
    [box] = spec["containers"]
    assert pod["metadata"]["namespace"] == "sandboxes"
    assert spec["restartPolicy"] == "Never" and spec["activeDeadlineSeconds"] == 600
    assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert box["securityContext"] == {
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    limits = {"cpu": "500m", "memory": str(256 * 1024**2), "ephemeral-storage": str(64 * 1024**2)}
    requests = {"cpu": "50m", "memory": str(32 * 1024**2)}
    assert box["resources"] == {"limits": limits, "requests": requests}
    assert spec["volumes"] == [
        {"name": "workspace", "emptyDir": {"medium": "Memory", "sizeLimit": str(64 * 1024**2)}},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": str(64 * 1024**2)}},
    ]
    assert (box["stdin"], box["stdinOnce"], box["tty"]) == (True, True, True)
    assert box["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert "runtimeClassName" not in spec


def test_a_request_is_never_above_its_limit():
    small = Limits(memory=16 * 1024**2, cpus=0.02, pids=32, disk=1024**2)
    pod = kube_api.pod_manifest("p", "i", [], {}, small, False, {}, {}, kube_api.PodSecurity("n"))
    assert pod["spec"]["containers"][0]["resources"]["requests"] == {
        "cpu": "20m",
        "memory": str(16 * 1024**2),
    }


def test_the_runtime_class_is_named_when_given():
    assert manifest(runtime_class="gvisor")["spec"]["runtimeClassName"] == "gvisor"


def test_a_resize_is_the_terminal_size_as_json():
    assert json.loads(kube_api.resize_message(91, 33)) == {"Width": 91, "Height": 33}
