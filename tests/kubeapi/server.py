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

import docker
from flask import Flask, Response, request
from pods import Pods, Refused
from simple_websocket import ConnectionClosed, Server
from werkzeug.serving import make_server

V5 = "v5.channel.k8s.io"
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


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
        try:
            return json_response(pods.patch(namespace, name, request.get_json(force=True)))
        except Refused as refused:
            return status(refused.code, refused.reason, refused.message)

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
