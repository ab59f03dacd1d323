"""A test Kubernetes API server: the part of the API the Kubernetes executor uses, on Docker.

Pods are created, read, listed (with label selectors), patched (labels, with resourceVersion
conflicts answered 409 as the real API server does) and deleted; their status (phase, the
container's state, its exit code and OOMKilled) is the Docker container's. pods/log, pods/attach
and pods/exec speak what a kubelet would: the log, and the channel protocol over WebSocket
(v5.channel.k8s.io, or only the versions given with --protocols). A pod is a container made from
the pod's spec, hardened as far as Docker can say it; the pid limit is the kubelet's podPidsLimit
(--pod-pids-limit). Plain HTTP, one bearer token; --kubeconfig writes a file pointing at it.

Independent of sandbox_engine: it knows Kubernetes and Docker, not the engine.

    python tests/kubeapi/server.py --port 0 --token T --kubeconfig /tmp/kubeconfig
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
import uuid
from datetime import UTC, datetime

import docker
from flask import Flask, Response, request
from simple_websocket import ConnectionClosed, Server
from werkzeug.serving import make_server

V5 = "v5.channel.k8s.io"
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
# Marks the containers that are pods, and the instance the engine's tests look for.
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


def status(code: int, reason: str, message: str) -> Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return Response(json.dumps(body), status=code, mimetype="application/json")


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

    def patch(self, namespace: str, name: str, body: dict) -> dict | Response:
        pod = self.get(namespace, name)
        if pod is None:
            return status(404, "NotFound", f'pods "{name}" not found')
        self.view(pod)  # the status as of now, and with it the version
        with self.lock:
            metadata = body.get("metadata") or {}
            wanted = metadata.get("resourceVersion")
            if wanted is not None and wanted != pod["metadata"]["resourceVersion"]:
                return status(
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


def demultiplex(read) -> object:
    """Docker's attach framing without a tty: (stream, payload) frames from a socket's reads."""
    buffer = b""
    while data := read():
        buffer += data
        while len(buffer) >= 8:
            size = int.from_bytes(buffer[4:8], "big")
            if len(buffer) < 8 + size:
                break
            yield buffer[0], buffer[8 : 8 + size]
            buffer = buffer[8 + size :]


def relay(ws, sock: socket.socket, tty: bool, resize, stdin: bool) -> None:
    """Docker's stream to the channels and the client's stdin to Docker, until the stream ends."""

    def read() -> bytes:
        try:
            return sock.recv(65536)
        except OSError:
            return b""

    def pump() -> None:
        frames = ((STDOUT, data) for data in iter(read, b"")) if tty else demultiplex(read)
        try:
            for channel, payload in frames:
                if channel in (STDOUT, STDERR) and payload:
                    ws.send(bytes([channel]) + payload)
        except ConnectionClosed:
            pass

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        while reader.is_alive():
            message = ws.receive(timeout=0.05)
            if message is None or not isinstance(message, bytes) or not message:
                continue
            channel, payload = message[0], message[1:]
            if channel == STDIN and stdin:
                sock.sendall(payload)
            elif channel == CLOSE and payload[:1] == bytes([STDIN]):
                sock.shutdown(socket.SHUT_WR)
            elif channel == RESIZE:
                size = json.loads(payload)
                resize(size["Height"], size["Width"])
    except (ConnectionClosed, OSError):
        pass
    finally:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
        reader.join(5)


def create_app(pods: Pods, token: str, protocols: list[str]) -> Flask:
    app = Flask("kubeapi")
    base = "/api/v1/namespaces/<namespace>/pods"

    @app.before_request
    def authenticated():
        if request.headers.get("Authorization") != f"Bearer {token}":
            return status(401, "Unauthorized", "Unauthorized")
        return None

    def json_response(body: dict, code: int = 200) -> Response:
        return Response(json.dumps(body), status=code, mimetype="application/json")

    @app.post(base)
    def create(namespace: str):
        manifest = request.get_json(force=True)
        if pods.get(namespace, manifest["metadata"]["name"]) is not None:
            return status(409, "AlreadyExists", f'pods "{manifest["metadata"]["name"]}" already exists')
        try:
            return json_response(pods.create(namespace, manifest), 201)
        except docker.errors.APIError as exc:
            return status(422, "Invalid", str(exc))

    @app.get(base)
    def listing(namespace: str):
        items = pods.listing(namespace, request.args.get("labelSelector", ""))
        return json_response({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})

    @app.get(base + "/<name>")
    def read(namespace: str, name: str):
        pod = pods.get(namespace, name)
        if pod is None:
            return status(404, "NotFound", f'pods "{name}" not found')
        return json_response(pods.view(pod))

    @app.patch(base + "/<name>")
    def patch(namespace: str, name: str):
        answer = pods.patch(namespace, name, request.get_json(force=True))
        return answer if isinstance(answer, Response) else json_response(answer)

    @app.delete(base + "/<name>")
    def delete(namespace: str, name: str):
        shown = pods.delete(namespace, name)
        if shown is None:
            return status(404, "NotFound", f'pods "{name}" not found')
        return json_response(shown)

    @app.get(base + "/<name>/log")
    def log(namespace: str, name: str):
        pod = pods.get(namespace, name)
        if pod is None:
            return status(404, "NotFound", f'pods "{name}" not found')
        text = pods.api.logs(pod["_container"], stdout=True, stderr=True)
        return Response(text, mimetype="text/plain")

    def running(namespace: str, name: str) -> dict | Response:
        pod = pods.get(namespace, name)
        if pod is None:
            return status(404, "NotFound", f'pods "{name}" not found')
        if pods.view(pod)["status"]["phase"] != "Running":
            return status(400, "BadRequest", "cannot attach to a container in a completed pod")
        return pod

    def flag(name: str) -> bool:
        return request.args.get(name, "").lower() in ("1", "true")

    @app.get(base + "/<name>/attach", websocket=True)
    def attach(namespace: str, name: str):
        pod = running(namespace, name)
        if isinstance(pod, Response):
            return pod
        container = pod["_container"]
        tty = flag("tty")
        params = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
        attached = pods.api.attach_socket(container, params=params)
        raw = getattr(attached, "_sock", attached)
        return websocket(
            lambda ws: relay(
                ws, raw, tty, lambda h, w: pods.api.resize(container, height=h, width=w), flag("stdin")
            ),
            lambda: {"metadata": {}, "status": "Success"},
        )

    @app.get(base + "/<name>/exec", websocket=True)
    def exec_(namespace: str, name: str):
        pod = running(namespace, name)
        if isinstance(pod, Response):
            return pod
        tty = flag("tty")
        exec_id = pods.api.exec_create(
            pod["_container"], request.args.getlist("command"), stdin=flag("stdin"), tty=tty
        )["Id"]
        started = pods.api.exec_start(exec_id, tty=tty, socket=True)
        raw = getattr(started, "_sock", started)

        def ended() -> dict:
            code = pods.api.exec_inspect(exec_id).get("ExitCode")
            if code == 0:
                return {"metadata": {}, "status": "Success"}
            return {
                "metadata": {},
                "status": "Failure",
                "reason": "NonZeroExitCode",
                "message": f"command terminated with non-zero exit code: {code}",
                "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
            }

        return websocket(
            lambda ws: relay(
                ws, raw, tty, lambda h, w: pods.api.exec_resize(exec_id, height=h, width=w), flag("stdin")
            ),
            ended,
        )

    def websocket(run, ended):
        """Upgrade this request, relay, then say on the error channel how the process ended."""
        ws = Server(request.environ, subprotocols=protocols)
        try:
            run(ws)
            if ws.subprotocol is not None:
                ws.send(bytes([ERROR]) + json.dumps(ended()).encode())
        except ConnectionClosed:
            pass
        try:
            ws.close()
        except Exception:  # noqa: BLE001 - the client may be gone already
            pass
        # As flask-sock does under Werkzeug's server: the connection is the WebSocket's, done.
        return Response()

    return app


def kubeconfig(url: str, token: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": url}}],
        "users": [{"name": "test", "user": {"token": token}}],
        "contexts": [
            {"name": "test", "context": {"cluster": "test", "user": "test", "namespace": "default"}}
        ],
        "current-context": "test",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", required=True)
    parser.add_argument("--kubeconfig", required=True, help="write a kubeconfig pointing here to this file")
    parser.add_argument("--protocols", default=V5, help="the channel protocols offered, best first")
    parser.add_argument("--pod-pids-limit", type=int, default=128, help="the kubelet's podPidsLimit")
    args = parser.parse_args(argv)
    pods = Pods(docker.APIClient(version="1.41", timeout=60, max_pool_size=64), args.pod_pids_limit)
    app = create_app(pods, args.token, args.protocols.split(","))
    server = make_server("127.0.0.1", args.port, app, threaded=True)
    url = f"http://127.0.0.1:{server.server_port}"
    with open(args.kubeconfig, "w") as f:
        json.dump(kubeconfig(url, args.token), f)
    print(url, flush=True)
    # Stopped by its owner's SIGTERM too: every pod's container goes with it.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        pods.remove_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
