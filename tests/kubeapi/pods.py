"""The test API server's pods: manifests as stored, each run by a Docker container made from it.

Labels, label selectors, resourceVersions (a patch naming an older one is refused with 409, as
the real API server refuses it) and a status read from the container: phase, the container's
state, its exit code and OOMKilled.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime

import docker

# Marks the containers that are pods.
DOCKER_LABEL = "kubeapi.pod"
_UNITS = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


def quantity(text: str) -> float:
    """A Kubernetes quantity: 500m, 256Mi, 1G, 268435456."""
    text = str(text)
    if text.endswith("m"):
        return float(text[:-1]) / 1000
    for suffix in sorted(_UNITS, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            return float(text[: -len(suffix)]) * _UNITS[suffix]
    return float(text)


def selected(labels: dict[str, str], selector: str) -> bool:
    """Whether labels match a selector of `k=v`, `k==v`, `k!=v`, `k` and `!k` terms."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Pods:
    """The pods, each a manifest as stored and the container that runs it."""

    def __init__(self, api: docker.APIClient, pod_pids_limit: int) -> None:
        self.api = api
        self.pod_pids_limit = pod_pids_limit
        self.lock = threading.Lock()
        self.pods: dict[tuple[str, str], dict] = {}
        self.version = 0

    def _bump(self, pod: dict) -> None:
        self.version += 1
        pod["metadata"]["resourceVersion"] = str(self.version)

    def create(self, namespace: str, manifest: dict) -> dict:
        metadata = manifest.setdefault("metadata", {})
        metadata.update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=now())
        container = self._container(namespace, manifest)
        with self.lock:
            manifest["_container"] = container
            manifest["_state"] = ""
            self._bump(manifest)
            self.pods[(namespace, metadata["name"])] = manifest
        self.api.start(container)
        return self.view(manifest)

    def _container(self, namespace: str, pod: dict) -> str:
        spec = pod["spec"]
        box = spec["containers"][0]
        pod_security = spec.get("securityContext") or {}
        security = box.get("securityContext") or {}
        limits = (box.get("resources") or {}).get("limits") or {}
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        user = security.get("runAsUser", pod_security.get("runAsUser"))
        group = security.get("runAsGroup", pod_security.get("runAsGroup", user))
        tmpfs = {}
        for mount in box.get("volumeMounts") or []:
            empty_dir = volumes[mount["name"]].get("emptyDir")
            if empty_dir is None or empty_dir.get("medium") != "Memory":
                raise ValueError("only emptyDir volumes in memory are served here")
            size = int(quantity(empty_dir.get("sizeLimit", "64Mi")))
            # An emptyDir is writable by the pod's user (this Docker keeps the image's mode of the
            # mount point, so the owner is set), and programs run from it.
            owner = f",uid={user},gid={group}" if user is not None else ""
            tmpfs[mount["mountPath"]] = f"rw,exec,nosuid,nodev,size={size}{owner}"
        labels = pod["metadata"].get("labels") or {}
        host_config = self.api.create_host_config(
            read_only=bool(security.get("readOnlyRootFilesystem")),
            tmpfs=tmpfs,
            # What the NetworkPolicy of the sandbox pods says: no ingress, no egress.
            network_mode="none",
            cap_drop=["ALL"] if "ALL" in (security.get("capabilities") or {}).get("drop", []) else None,
            security_opt=["no-new-privileges"] if security.get("allowPrivilegeEscalation") is False else None,
            pids_limit=self.pod_pids_limit,
            mem_limit=int(quantity(limits["memory"])) if "memory" in limits else None,
            memswap_limit=int(quantity(limits["memory"])) if "memory" in limits else None,
            nano_cpus=int(quantity(limits["cpu"]) * 1e9) if "cpu" in limits else None,
        )
        created = self.api.create_container(
            image=box["image"],
            entrypoint=box.get("command"),
            command=box.get("args"),
            name=pod["metadata"]["name"],
            user=f"{user}:{group}" if user is not None else None,
            working_dir=box.get("workingDir"),
            environment={e["name"]: e.get("value", "") for e in box.get("env") or []},
            labels={
                DOCKER_LABEL: f"{namespace}/{pod['metadata']['name']}",
                # The engine's end-to-end tests find an instance's sandboxes by these.
                "sandbox-engine": "1",
                "sandbox-engine.instance": labels.get("sandbox-engine/instance", ""),
            },
            stdin_open=bool(box.get("stdin")),
            tty=bool(box.get("tty")),
            network_disabled=True,
            host_config=host_config,
        )
        return created["Id"]

    def get(self, namespace: str, name: str) -> dict | None:
        with self.lock:
            return self.pods.get((namespace, name))

    def view(self, pod: dict, running: bool = False) -> dict:
        """The pod as the API shows it: its manifest, and a status from its container (which a
        listing that saw it running need not ask Docker for again)."""
        state = {"Status": "running"} if running else self._state(pod["_container"])
        with self.lock:
            # A status that changed is a change: the resourceVersion moves, as a kubelet's update does.
            if state.get("Status") != pod["_state"]:
                pod["_state"] = state.get("Status")
                self._bump(pod)
            shown = {k: v for k, v in pod.items() if not k.startswith("_")}
            shown = json.loads(json.dumps(shown))
        shown["status"] = _status(state)
        return shown

    def _state(self, container: str) -> dict:
        try:
            return self.api.inspect_container(container)["State"]
        except docker.errors.NotFound:
            return {"Status": "removed"}

    def patch(self, namespace: str, name: str, body: dict) -> dict:
        pod = self.get(namespace, name)
        if pod is None:
            raise Refused(404, "NotFound", f'pods "{name}" not found')
        self.view(pod)  # the status as of now, and with it the version
        with self.lock:
            metadata = body.get("metadata") or {}
            wanted = metadata.get("resourceVersion")
            if wanted is not None and wanted != pod["metadata"]["resourceVersion"]:
                raise Refused(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on pods "{name}": the object has been modified; '
                    "please apply your changes to the latest version and try again",
                )
            labels = pod["metadata"].setdefault("labels", {})
            for key, value in (metadata.get("labels") or {}).items():
                if value is None:
                    labels.pop(key, None)
                else:
                    labels[key] = value
            self._bump(pod)
        return self.view(pod)

    def delete(self, namespace: str, name: str) -> dict | None:
        with self.lock:
            pod = self.pods.pop((namespace, name), None)
        if pod is None:
            return None
        shown = self.view(pod)
        try:
            self.api.remove_container(pod["_container"], force=True)
        except docker.errors.NotFound:
            pass
        return shown

    def listing(self, namespace: str, selector: str) -> list[dict]:
        with self.lock:
            pods = [p for (ns, _), p in self.pods.items() if ns == namespace]
        pods = [p for p in pods if selected(p["metadata"].get("labels") or {}, selector)]
        # One listing of the running containers for all, as an API server answers from its cache.
        running = {c["Id"] for c in self.api.containers(filters={"label": DOCKER_LABEL, "status": "running"})}
        return [self.view(p, p["_container"] in running) for p in pods]

    def remove_all(self) -> None:
        for namespace, name in list(self.pods):
            self.delete(namespace, name)


def _status(state: dict) -> dict:
    name = "sandbox"
    base = {"name": name, "image": "", "imageID": "", "restartCount": 0, "ready": False}
    if state.get("Status") == "running":
        return {
            "phase": "Running",
            "containerStatuses": [{**base, "ready": True, "state": {"running": {"startedAt": now()}}}],
        }
    if state.get("Status") in ("exited", "dead"):
        code = state.get("ExitCode", 0)
        reason = "OOMKilled" if state.get("OOMKilled") else ("Completed" if code == 0 else "Error")
        return {
            "phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [{**base, "state": {"terminated": {"exitCode": code, "reason": reason}}}],
        }
    if state.get("Status") == "removed":
        return {"phase": "Failed"}
    return {
        "phase": "Pending",
        "containerStatuses": [{**base, "state": {"waiting": {"reason": "ContainerCreating"}}}],
    }


class Refused(Exception):
    """An answer of the API's Status kind: its HTTP code, reason and message."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
