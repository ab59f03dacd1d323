"""The Kubernetes implementation of the executor: a pod per sandbox, its labels, and its claims.

A session's sandbox is one pod, `se-<instance>-<session>` (a warm pool's: `se-<instance>-pool-<id>`),
labelled with the instance, language, session and pool. A pool's pod, offered once it runs, is
taken for a session in the state store (see pool_members) and claimed there too, its labels
following off the client's path (name_claim); any other pod is claimed for one attachment by
setting its owner label. Labels are set by patches made with the pod's resourceVersion, which
the API server applies only if nobody changed the pod since it was read (409 Conflict
otherwise), so exactly one claim ever succeeds. The launcher protocol is Docker's (see launch); the pod starts
when it is created, and its launcher waits on stdin for the program.

Owners are a worker's `p<pid>` and the replica's host name: a replica judges only its own claims
(whether their worker lives), and its start-up reap removes only the pods it made or claimed
(its host name survives a restart of its container, not of its pod); another replica's pods end
with it, or at their deadline (activeDeadlineSeconds).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
import uuid
from dataclasses import replace
from datetime import datetime

import kubernetes.client

from . import kube_api, launch
from .executor import (
    AlreadyClaimed,
    Executor,
    ExecutorError,
    OwnerAlive,
    Sandbox,
    SandboxInfo,
    SandboxNotFound,
    SandboxRef,
    SandboxSpec,
)
from .kube_api import PodSecurity, status_of, translated
from .kube_sandbox import KubeSandbox

log = logging.getLogger(__name__)

PREFIX = "sandbox-engine/"
LABEL_INSTANCE = PREFIX + "instance"
LABEL_LANGUAGE = PREFIX + "language"
LABEL_SESSION = PREFIX + "session"
LABEL_POOL = PREFIX + "pool"
LABEL_TTY = PREFIX + "tty"
LABEL_OWNER = PREFIX + "owner"
LABEL_HOST = PREFIX + "host"
# Not labels: a command is no label value.
ANNOTATION_COMPILE = PREFIX + "compile"
ANNOTATION_CREATED = PREFIX + "created"
POOL = "pool-"
# A pool's pod that is not running this long after it was made, or a claim half made, was left by
# someone who failed.
STUCK = 60.0
# How many times a claim re-reads a pod whose resourceVersion moved under it (its status changed)
# before it gives up.
CLAIM_TRIES = 5
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]")


def _name_part(text: str) -> str:
    """A piece of a pod's name: lower case letters, digits and '-' only."""
    return re.sub(r"[^a-z0-9-]", "-", text.lower())


def _label(text: str) -> str:
    return _LABEL_VALUE.sub("-", text)[:63].strip("-_.")


class KubeExecutor(Executor):
    def __init__(
        self,
        instance: str,
        namespace: str = "default",
        kubeconfig: str | None = None,
        runtime_class: str | None = None,
        deadline: int = 3600,
        host: str | None = None,
        own_only: bool = False,
        registry: str | None = None,
    ) -> None:
        self.instance = instance
        self.security = PodSecurity(namespace, runtime_class or None, deadline)
        self.namespace = namespace
        self.prefix = f"se-{_name_part(instance)}-"
        self.host = _label(host or socket.gethostname())
        # Listing only the pods this replica made or claimed: what its start-up reap may remove,
        # while other replicas of the instance serve theirs.
        self.own_only = own_only
        self.registry = registry.rstrip("/") + "/" if registry else ""
        self.config = kube_api.configuration(kubeconfig)
        self.api = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(self.config))

    def create(self, spec: SandboxSpec) -> SandboxRef:
        pooled = spec.session_id is None
        name = self.prefix + (f"{POOL}{uuid.uuid4().hex[:12]}" if pooled else spec.session_id)
        labels = {
            LABEL_INSTANCE: _label(self.instance),
            LABEL_LANGUAGE: spec.language,
            LABEL_SESSION: "" if pooled else spec.session_id,
            LABEL_POOL: "1" if pooled else "",
            LABEL_TTY: "1" if spec.tty else "",
            LABEL_OWNER: "",
            # Its maker's until a claim makes it the claimer's.
            LABEL_HOST: self.host,
        }
        annotations = {
            ANNOTATION_COMPILE: json.dumps(spec.compile) if spec.compile else "",
            ANNOTATION_CREATED: f"{time.time():.3f}",
        }
        # A pod's limits cannot change while it runs on every cluster (in-place resize is new and
        # optional), so the compile stage runs under the run's limits, as under gVisor with Docker.
        manifest = kube_api.pod_manifest(
            name,
            self.registry + spec.image,
            launch.command(spec),
            launch.environment(spec),
            spec.limits,
            spec.tty,
            labels,
            annotations,
            self.security,
        )
        with translated(f"create a sandbox of {spec.image}"):
            pod = self.api.create_namespaced_pod(self.namespace, manifest)
        if not pooled:
            # A pod runs from its creation: a session's waits for its program like a pool's.
            return _ref(pod, running=False)
        # A pool's pod is offered once it runs (the refiller withdraws a member it does not see
        # running); a session takes it in the state store under this name (see pool_members).
        self._wait_running(name)
        return replace(_ref(pod, running=True), name=name)

    def _wait_running(self, name: str) -> None:
        deadline, pause = time.monotonic() + STUCK, 0.02
        while time.monotonic() < deadline:
            with translated("read a pool sandbox's pod"):
                pod = self.api.read_namespaced_pod(name, self.namespace)
            phase = pod.status.phase if pod.status else None
            if phase == "Running":
                return
            if phase in ("Succeeded", "Failed"):
                break
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
        self._delete(name)
        raise ExecutorError(f"the pool's pod {name} did not start (phase {phase})")

    def _pods(self, selector: str = "") -> list:
        query = f"{LABEL_INSTANCE}={_label(self.instance)}" + (f",{selector}" if selector else "")
        with translated("list the sandboxes"):
            return self.api.list_namespaced_pod(self.namespace, label_selector=query).items

    def _info(self, pod) -> SandboxInfo:
        labels = pod.metadata.labels or {}
        phase = pod.status.phase if pod.status else None
        pooled = labels.get(LABEL_POOL) == "1"
        session_id = labels.get(LABEL_SESSION, "")
        owner = labels.get(LABEL_OWNER) or None
        host = labels.get(LABEL_HOST) or None
        return SandboxInfo(
            ref=_ref(pod, running=phase == "Running"),
            name=pod.metadata.name,
            session_id=session_id,
            created_at=_created(pod),
            claimed=owner is not None,
            running=phase == "Running",
            exited=phase in ("Succeeded", "Failed") or pod.metadata.deletion_timestamp is not None,
            pooled=pooled and session_id == "",
            # Another replica's owner is not this one's to judge: see orphaned.
            owner=f"{owner}@{host}" if owner and host != self.host else owner,
        )

    def list(self) -> list[SandboxInfo]:
        return [self._info(pod) for pod in self._pods(f"{LABEL_HOST}={self.host}" if self.own_only else "")]

    def _find(self, session_id: str):
        pods = self._pods(f"{LABEL_SESSION}={session_id}")
        return pods[0] if pods else None

    def orphaned(self, info: SandboxInfo, alive: OwnerAlive, now: float) -> bool:
        if info.pooled:
            return info.exited or (not info.running and now - info.created_at > STUCK)
        if not info.claimed or info.owner is None:
            return False
        if "@" in info.owner:
            # Claimed by a worker of another replica, whose reaper judges it.
            return False
        return not alive(info.owner, info.session_id)

    def _patch_labels(self, pod, labels: dict[str, str]) -> None:
        """Set labels on the pod as read: refused with 409 if it changed since."""
        body = {"metadata": {"resourceVersion": pod.metadata.resource_version, "labels": labels}}
        self.api.patch_namespaced_pod(pod.metadata.name, self.namespace, body)

    def claim(self, session_id: str, owner: str, ref: SandboxRef | None = None) -> Sandbox:
        for _ in range(CLAIM_TRIES):
            pod = self._read(ref, session_id) if ref is not None else self._find(session_id)
            if pod is None:
                raise SandboxNotFound(session_id)
            if (pod.metadata.labels or {}).get(LABEL_OWNER):
                raise AlreadyClaimed(session_id)
            try:
                with translated("claim the sandbox"):
                    self._patch_labels(pod, self._claim_labels(session_id, owner))
            except ExecutorError as exc:
                if status_of(exc) == 404:
                    raise SandboxNotFound(session_id) from exc
                if status_of(exc) == 409:
                    # Changed since read: claimed by another, or only its status moved on.
                    continue
                raise
            # As read just now: a pod seen running need not be asked again before the attach.
            running = pod.status is not None and pod.status.phase == "Running"
            return KubeSandbox(self.api, self.config, self.namespace, _ref(pod, running), session_id)
        raise AlreadyClaimed(session_id)

    def _claim_labels(self, session_id: str, owner: str) -> dict[str, str]:
        # The session's label too: a pool's pod taken in the state store has none yet.
        return {LABEL_SESSION: session_id, LABEL_OWNER: _label(owner), LABEL_HOST: self.host}

    def sandbox(self, ref: SandboxRef, session_id: str) -> Sandbox:
        return KubeSandbox(self.api, self.config, self.namespace, ref, session_id)

    def name_claim(self, session_id: str, owner: str, ref: SandboxRef, claimed_at: float) -> bool:
        for _ in range(CLAIM_TRIES):
            pod = self._read(ref, session_id)
            if pod is None:
                return True  # removed already: its session ran, and ended (or its attach failed)
            try:
                with translated("name the sandbox's claim"):
                    self._patch_labels(pod, self._claim_labels(session_id, owner))
            except ExecutorError as exc:
                if status_of(exc) == 404:
                    return True
                if status_of(exc) == 409:
                    continue  # its status moved on since it was read
                raise
            return not _finished_before(pod, claimed_at)
        raise ExecutorError(f"the pod of {session_id} kept changing while its claim was labelled")

    def _read(self, ref: SandboxRef, session_id: str):
        """The pod by its name, if it is still the session's (or, for a pool's pod the session
        took in the state store, `ref.name`, still nobody's)."""
        with translated("read the sandbox's pod", ignore=(404,)):
            pod = self.api.read_namespaced_pod(ref.id, self.namespace)
            labels = pod.metadata.labels or {}
            taken = bool(ref.name) and labels.get(LABEL_POOL) == "1" and not labels.get(LABEL_SESSION)
            return pod if labels.get(LABEL_SESSION) == session_id or taken else None
        return None

    def _delete(self, name: str) -> None:
        with translated("remove the sandbox", ignore=(404,)):
            self.api.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)

    def remove(self, session_id: str, ref: SandboxRef | None = None) -> None:
        if ref is not None:
            self._delete(ref.id)
            return
        pod = self._find(session_id)
        if pod is not None:
            self._delete(pod.metadata.name)

    def remove_sandbox(self, info: SandboxInfo) -> None:
        self._delete(info.name)

    def check(self, images: list[str]) -> str | None:
        # Images live in the cluster's registry, which only a node's pull can ask: a missing one
        # shows as the pod's ErrImagePull. The API answering for this namespace is what is checked.
        try:
            self._pods("sandbox-engine/readiness=check")
        except ExecutorError as exc:
            log.info("not ready: %s", exc, exc_info=exc.__cause__)
            return str(exc)
        return None

    def close(self) -> None:
        self.api.api_client.close()


def _created(pod) -> float:
    annotations = pod.metadata.annotations or {}
    try:
        return float(annotations.get(ANNOTATION_CREATED, ""))
    except ValueError:
        stamp = pod.metadata.creation_timestamp
        return stamp.timestamp() if isinstance(stamp, datetime) else 0.0


def _finished_before(pod, claimed_at: float) -> bool:
    """Whether the pod's program had ended before the claim: a warm pod that died while it waited."""
    for status in (pod.status.container_statuses or []) if pod.status else []:
        ended = status.state.terminated if status.state else None
        if ended is not None and isinstance(ended.finished_at, datetime):
            return ended.finished_at.timestamp() < claimed_at
    return False


def _ref(pod, running: bool) -> SandboxRef:
    """A pod as a SandboxRef, from the labels and annotations it was created with."""
    labels = pod.metadata.labels or {}
    compile_json = (pod.metadata.annotations or {}).get(ANNOTATION_COMPILE)
    return SandboxRef(
        id=pod.metadata.name,
        language=labels.get(LABEL_LANGUAGE, ""),
        tty=labels.get(LABEL_TTY) == "1",
        compile=tuple(json.loads(compile_json)) if compile_json else None,
        running=running,
    )
