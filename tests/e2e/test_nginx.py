"""sandbox-engine behind the real nginx, configured by deploy/nginx.conf as shipped."""

from __future__ import annotations

import dataclasses
import grp
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from itertools import pairwise

import pytest
import requests
from harness import INTERACTIVE, ROOT, Server, Transcript, free_port
from test_resume import COUNTER, EXPECTED, drained, resumed

# Every test here runs a real server on the real Docker daemon.
pytestmark = [pytest.mark.docker, pytest.mark.slow]

DEPLOY_CONF = os.path.join(ROOT, "deploy", "nginx.conf")
FINISHED = {"type": "state", "state": "FINISHED", "exitCode": 0, "reason": "exited", "signal": None}

MAIN_CONF = """\
{user}
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{}}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/sandbox-engine.conf;
}}
"""


def nginx_binary() -> str:
    """Debian's nginx. Missing, it skips locally and fails under CI=true."""
    found = shutil.which("nginx", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if found is None:
        message = "nginx is not installed; run `make test`, which installs nginx-light"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def site_conf(upstream_ports: list[int], listen_port: int) -> str:
    """deploy/nginx.conf with only its port numbers changed: one upstream server per replica."""
    with open(DEPLOY_CONF) as f:
        text = f.read()
    upstreams = " ".join(f"server 127.0.0.1:{port};" for port in upstream_ports)
    for old, new in (
        ("server 127.0.0.1:8080;", upstreams),
        ("listen 80;", f"listen 127.0.0.1:{listen_port};"),
    ):
        assert text.count(old) == 1, f"deploy/nginx.conf should say {old!r} exactly once"
        text = text.replace(old, new)
    return text


def user_directive() -> str:
    # Started by root, nginx would run its workers as nobody, who cannot write into tmp_path.
    if os.geteuid() != 0:
        return ""
    return f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        # SIGTERM is nginx's fast shutdown: open WebSockets are closed rather than waited for.
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture
def proxied(make_server, tmp_path) -> Iterator[Server]:
    """A two-worker server reached only through nginx: the Server's url is nginx's. Replicas
    (SANDBOX_ENGINE_E2E_REPLICAS=2) are all nginx's upstream, which spreads requests over them."""
    binary = nginx_binary()
    server = make_server(workers=2)
    port = free_port()
    replicas = [server] + ([server.peer] if server.peer is not None else [])
    upstreams = [int(replica.url.rsplit(":", 1)[1]) for replica in replicas]
    (tmp_path / "sandbox-engine.conf").write_text(site_conf(upstreams, port))
    (tmp_path / "nginx.conf").write_text(MAIN_CONF.format(user=user_directive(), dir=tmp_path))
    error_log = tmp_path / "error.log"
    args = [binary, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", str(error_log)]
    with open(tmp_path / "nginx.out", "w") as out:
        process = subprocess.Popen(
            [*args, "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                log = (tmp_path / "nginx.out").read_text()
                raise RuntimeError(f"nginx exited with {process.returncode}: {log}")
            try:
                if requests.get(f"{url}/healthz", timeout=10).status_code == 200:
                    break
            except requests.RequestException:
                pass  # not listening yet, or too slow to answer this time
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not proxy /healthz in 30 s; see {error_log}")
            time.sleep(0.05)
        # Its WebSockets go through nginx too (to whichever replica nginx chooses).
        yield dataclasses.replace(server, url=url, peer=None)
    finally:
        stop(process)


def line_arrivals(messages: list[tuple[float, dict]], after: str) -> dict[str, float]:
    """When each complete stdout line following `after` arrived, on the attachment's clock."""
    text, arrivals = "", {}
    for at, message in messages:
        if message["type"] != "stdout":
            continue
        text += message["data"]
        if after in text:
            for line in text.split(after, 1)[1].split("\n")[:-1]:
                arrivals.setdefault(line, at)
    return arrivals


def test_interactive_session_streams_live_through_nginx(proxied):
    session_id = proxied.create(INTERACTIVE)
    # The Origin a browser on the IDE page sends: accepted only if X-Forwarded-Host reaches the app.
    with proxied.attach(session_id, origin=proxied.url) as ws:
        assert ws.read_stdout_until("Enter your name: ") == "Program started\nEnter your name: "
        ws.send({"type": "input", "data": "Ada\n"})
        transcript = ws.read_to_end(timeout=30)

    assert transcript.messages[0][1] == {"type": "state", "state": "RUNNING"}
    assert transcript.text() == "Program started\nEnter your name: Hello Ada\n0\n1\n2\n3\n4\n"
    assert transcript.text("stderr") == ""
    assert transcript.ending == FINISHED
    arrivals = line_arrivals(transcript.messages, "Enter your name: ")
    times = [arrivals[line] for line in ("Hello Ada", "0", "1", "2", "3", "4")]
    gaps = [round(b - a, 2) for a, b in pairwise(times)]
    # One line a second as the program prints it; a buffering proxy would deliver them together.
    assert all(gap >= 0.5 for gap in gaps), f"lines arrived at {gaps} s intervals"

    record = requests.get(f"{proxied.url}/session/{session_id}", timeout=10).json()
    assert (record["state"], record["exitCode"], record["reason"]) == ("FINISHED", 0, "exited")


def test_large_output_arrives_whole_through_nginx(proxied):
    transcript = proxied.run("print('x' * 200000)")
    text = transcript.text()
    assert len(text) == 200001
    assert text == "x" * 200000 + "\n"
    assert transcript.ending == FINISHED


def test_largest_code_passes_nginx(proxied):
    # 256 KiB of control characters, each JSON-escaped to six bytes: a body of 1.5 MiB.
    code = "#" + "\x01" * (262144 - 1)
    response = proxied.post(code)
    assert response.status_code == 201, response.text[:300]
    session_id = response.json()["sessionId"]
    assert requests.delete(f"{proxied.url}/session/{session_id}", timeout=30).status_code == 204
    assert proxied.session(session_id)["state"] == "TERMINATED"
    assert proxied.wait_no_containers(pool_too=False) == []


def test_a_resume_through_nginx_after_a_cut_sees_every_byte_once(proxied, proxy_to):
    # The cut is between the client and nginx, as a client's network drops: nginx's own
    # connection to the server then ends too, without a close frame the client never sent.
    proxy = proxy_to(proxied)
    session_id = proxied.create(COUNTER)
    first = proxied.attach(session_id, base=proxy.ws_base)
    first.read_stdout_until("line 10\n")
    proxy.cut()
    drained(first)
    with resumed(proxied, session_id, first.last_seq, proxy.ws_base) as second:
        transcript = second.read_to_end()
    assert Transcript(first.messages).text() + transcript.text() == EXPECTED
    assert second.seqs[0] == first.seqs[-1] + 1 and not second.gaps
    assert {"type": "live"} in [m for _, m in transcript.messages]
    assert transcript.ending == FINISHED
