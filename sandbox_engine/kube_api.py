"""The Kubernetes wire, as the Kubernetes executor uses it: the client, a sandbox's pod manifest,
the channels of pods/attach and pods/exec, and the API's errors in our terms.

The Kubernetes modules (`kube_api`, `kube_executor`, `kube_sandbox`) are the only ones that import
the `kubernetes` client; everything above them speaks of sandboxes, streams and exits.

Stdio goes over the WebSocket subprotocol v5.channel.k8s.io: each binary message is one byte of
channel (0 stdin, 1 stdout, 2 stderr, 3 error: the process's end as a Status, 4 resize) and its
payload; v5 adds channel 255, whose payload names a channel the sender closes, which is how a
client gives the program EOF on stdin. Older versions have no way to do that, so they are refused.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import kubernetes.client
import kubernetes.config
import urllib3.exceptions
import websocket
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream as ws_stream
from kubernetes.stream.ws_client import V5_CHANNEL_PROTOCOL

from .executor import ExecutorError, Limits, RuntimeUnavailable

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
_HANDSHAKE = re.compile(r"Handshake status (\d{3})")
# The API's errors that mean "it is not there", as opposed to "it said no".
_UNREACHABLE = (urllib3.exceptions.HTTPError, ConnectionError, OSError, websocket.WebSocketException)


def configuration(kubeconfig: str | None = None) -> kubernetes.client.Configuration:
    """The client's configuration: the kubeconfig file when one is named (or KUBECONFIG is set),
    else the pod's service account (in-cluster)."""
    config = kubernetes.client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path or not os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubernetes.config.load_kube_config(config_file=path, client_configuration=config)
    else:
        kubernetes.config.load_incluster_config(client_configuration=config)
    return config


@contextmanager
def translated(doing: str, ignore: tuple[int, ...] = ()) -> Iterator[None]:
    """Turn the client's failures into the executor's errors; `doing` completes "Kubernetes could
    not ...". Statuses in `ignore` pass silently (a 404 of what is to be removed)."""
    try:
        yield
    except ApiException as exc:
        if exc.status in ignore:
            return
        if exc.status == 0 or exc.status is None or exc.status >= 500:
            raise RuntimeUnavailable(f"Kubernetes could not {doing}: {_reason(exc)}") from exc
        raise ExecutorError(f"Kubernetes could not {doing}: {_reason(exc)}") from exc
    except _UNREACHABLE as exc:
        raise RuntimeUnavailable(f"the Kubernetes API server does not answer ({doing})") from exc


def status_of(error: ExecutorError) -> int | None:
    """The HTTP status the API answered with, for an error translated() made of its refusal."""
    return getattr(error.__cause__, "status", None)


def _reason(exc: ApiException) -> str:
    try:
        return json.loads(exc.body or "")["message"]
    except (ValueError, KeyError, TypeError):
        return str(exc.reason)


@dataclass(frozen=True)
class PodSecurity:
    """What the executor's configuration adds to every sandbox's pod."""

    namespace: str
    # The RuntimeClass that runs the pod (gVisor's, e.g. "gvisor"); None for the cluster's default.
    runtime_class: str | None = None
    # The backstop: the kubelet ends a pod this long after it started, whoever forgot it.
    deadline: int = 3600


# The images' own unprivileged user: a pod cannot lease a host uid of its own as Docker's
# sandboxes do (see uids); the node's runtime (gVisor, or the pod's user namespace) separates pods.
RUN_AS = 10001
WORKDIR = "/workspace"
# What the scheduler reserves for a sandbox: what one uses while its program waits or prints a
# little (an idle Python sandbox holds 6.4 MiB; see the README's "Scaling out"), not its limits,
# which most programs never reach; a node then holds as many sessions as a Docker host does.
REQUEST_CPU = 50
REQUEST_MEMORY = 32 * 1024**2


def pod_manifest(
    name: str,
    image: str,
    command: list[str],
    env: dict[str, str],
    limits: Limits,
    tty: bool,
    labels: dict[str, str],
    annotations: dict[str, str],
    security: PodSecurity,
) -> dict:
    """A sandbox's pod: the Docker executor's hardening in Kubernetes' terms, readable in one place."""
    cpu = int(limits.cpus * 1000)
    resources = {"cpu": f"{cpu}m", "memory": str(limits.memory), "ephemeral-storage": str(limits.disk)}
    requests = {"cpu": f"{min(cpu, REQUEST_CPU)}m", "memory": str(min(limits.memory, REQUEST_MEMORY))}
    spec: dict = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": security.deadline,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 0,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "sandbox",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": command,
                "workingDir": WORKDIR,
                "env": [{"name": key, "value": value} for key, value in sorted(env.items())],
                # One attachment, the claimed one: its close is the program's EOF.
                "stdin": True,
                "stdinOnce": True,
                "tty": tty,
                "resources": {"limits": resources, "requests": requests},
                "securityContext": {
                    "readOnlyRootFilesystem": True,
                    "allowPrivilegeEscalation": False,
                    "privileged": False,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    {"name": "workspace", "mountPath": WORKDIR},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
            }
        ],
        # In memory, as Docker's tmpfs: counted against the pod's memory, gone with the pod.
        "volumes": [
            {"name": "workspace", "emptyDir": {"medium": "Memory", "sizeLimit": str(limits.disk)}},
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": str(limits.disk)}},
        ],
    }
    if security.runtime_class:
        spec["runtimeClassName"] = security.runtime_class
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": security.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    }


def resize_message(cols: int, rows: int) -> bytes:
    return json.dumps({"Width": cols, "Height": rows}).encode()


class Channels:
    """One pods/attach or pods/exec connection, spoken in v5.channel.k8s.io.

    The connection is made by the client library (its URL, authentication and TLS); the frames
    are read here, one at a time, so that stdout and stderr keep the order they came in.
    """

    def __init__(self, connection) -> None:
        self._connection = connection
        self._socket: websocket.WebSocket = connection.sock
        self._lock = threading.Lock()
        self._closed = False

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """(channel, payload) of stdout and stderr, until the connection ends."""
        while not self._closed:
            try:
                opcode, frame = self._socket.recv_data_frame(True)
            except (websocket.WebSocketConnectionClosedException, OSError):
                return
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return
            data = frame.data
            if not data:
                continue
            channel, payload = data[0], bytes(data[1:])
            # The error channel's Status (how the process ended) is no output: a program's end,
            # or a compile stage's, is its se-run's EXIT mark (see launch).
            if channel in (STDOUT, STDERR) and payload:
                yield channel, payload

    def write(self, channel: int, data: bytes) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._socket.send_binary(bytes([channel]) + data)
            except (websocket.WebSocketException, OSError):
                # The program ended or stdin was closed: input has nowhere to go.
                pass

    def close_stdin(self) -> None:
        self.write(CLOSE, bytes([STDIN]))

    def resize(self, cols: int, rows: int) -> None:
        self.write(RESIZE, resize_message(cols, rows))

    def close(self) -> None:
        with self._lock:
            self._closed = True
        # At once, without the closing handshake, which would wait for the server's answer while
        # another greenlet may be reading.
        try:
            self._socket.shutdown()
        except (websocket.WebSocketException, OSError):
            pass


def connect(
    config: kubernetes.client.Configuration, verb: str, name: str, namespace: str, **params
) -> Channels:
    """Open pods/attach or pods/exec (`verb`) of a pod, with the client library's own WebSocket
    code; RuntimeUnavailable unless the server speaks v5.channel.k8s.io."""
    # A client of its own: the library's stream() swaps the client's call_api while it connects,
    # which other greenlets' REST calls on a shared client would go through.
    api = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(config))
    method = {
        "attach": api.connect_get_namespaced_pod_attach,
        "exec": api.connect_get_namespaced_pod_exec,
    }[verb]
    with translated(f"open pods/{verb}"):
        try:
            connection = ws_stream(method, name, namespace, _preload_content=False, binary=True, **params)
        except ApiException as exc:
            # The library reports a refused upgrade as status 0; the handshake's own status is in
            # its message ("Handshake status 404 Not Found ..."): a refusal, not an outage.
            refused = _HANDSHAKE.search(str(exc.reason))
            if exc.status == 0 and refused:
                exc.status = int(refused.group(1))
            raise
        finally:
            # Only the WebSocket outlives the call.
            api.api_client.close()
    if connection.subprotocol != V5_CHANNEL_PROTOCOL:
        connection.close()
        # Short, as a WebSocket's close reason must be: the client is told it as it is.
        raise RuntimeUnavailable(
            f"pods/{verb} without {V5_CHANNEL_PROTOCOL} (offered: {connection.subprotocol or 'none'}); "
            "Kubernetes 1.30+ needed"
        )
    return Channels(connection)
