"""`make soak`: 50 concurrent interactive sessions of mixed languages and behaviours for ten
minutes, with dockerd restarted once in the middle, against a real server on loopback.

Every session's transcript is checked against what its program must produce. Sessions that
overlap the daemon's restart may end `internal_error` or be refused (503); any other outcome is a
failure. At the end: containers left (must be 0), the workers' memory at start and end, and the
files in the state directory. The report replaces the soak section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import date

import requests
from websockets.sync.client import connect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)
INSTANCE = "soak"
SECTION_START = "<!-- soak: written by make soak -->"
SECTION_END = "<!-- /soak -->"


@dataclass(frozen=True)
class Behaviour:
    name: str
    language: str
    code: str
    inputs: tuple[str, ...]
    # What the transcript must show: stdout (None: not checked), reason, exit code (None: any).
    stdout: str | None
    reason: str
    exit_code: int | None = None
    kill_after: str | None = None
    tty: bool = False
    # End of input after the inputs: the program reads until it.
    eof: bool = False


BEHAVIOURS = (
    Behaviour(
        "chatty",
        "python",
        "import time\nfor i in range(100):\n    print('line', i)\n    time.sleep(0.01)\n",
        (),
        "".join(f"line {i}\n" for i in range(100)),
        "exited",
        0,
    ),
    Behaviour("silent", "bash", "sleep 2; echo done", (), "done\n", "exited", 0),
    Behaviour(
        "input-driven",
        "python",
        "for _ in range(3):\n    print('got', input('? '))\n",
        ("a\n", "b\n", "c\n"),
        "? got a\n? got b\n? got c\n",
        "exited",
        0,
    ),
    Behaviour(
        "input-driven-js",
        "javascript",
        "const rl = require('readline').createInterface({input: process.stdin});\n"
        "rl.on('line', (l) => console.log('js', l));\n",
        ("x\n", "y\n"),
        "js x\njs y\n",
        "exited",
        0,
        eof=True,
    ),
    Behaviour(
        "killed",
        "python",
        "import time\nprint('ready', flush=True)\ntime.sleep(60)\n",
        (),
        None,
        "killed",
        kill_after="ready",
    ),
    Behaviour("crashing", "c", "int main(void){ volatile int *p = 0; return *p; }", (), "", "exited", 139),
    Behaviour("exit-code", "ruby", "puts 'bye'; exit 4", (), "bye\n", "exited", 4),
    Behaviour("flood", "python", "while True:\n    print('x' * 1000)\n", (), None, "output_limit"),
    Behaviour(
        "terminal",
        "python",
        "name = input('name: ')\nprint('hi', name)\n",
        ("ada\r",),
        None,
        "exited",
        0,
        tty=True,
    ),
)


@dataclass
class Tally:
    served: int = 0
    ok: int = 0
    failures: collections.Counter = field(default_factory=collections.Counter)
    during_restart: collections.Counter = field(default_factory=collections.Counter)
    examples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_rss(master_pid: int) -> int:
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            if parent != master_pid and int(pid) != master_pid:
                continue
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        except (FileNotFoundError, ProcessLookupError, StopIteration, ValueError):
            continue
    return total


def containers() -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=sandbox-engine.instance={INSTANCE}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.split()


def one_session(url: str, behaviour: Behaviour) -> tuple[str, str]:
    """('ok' | a failure's kind, detail)."""
    body = {"language": behaviour.language, "code": behaviour.code}
    if behaviour.tty:
        body["tty"] = True
    response = requests.post(f"{url}/session", json=body, timeout=30)
    if response.status_code != 201:
        return f"http {response.status_code}", response.text[:200]
    session_id = response.json()["sessionId"]
    ws_url = "ws" + url[len("http") :] + f"/ws/session/{session_id}"
    stdout = []
    with connect(ws_url, open_timeout=30, max_size=None) as ws:
        for data in behaviour.inputs:
            ws.send(json.dumps({"type": "input", "data": data}))
        if behaviour.eof:
            ws.send(json.dumps({"type": "eof"}))
        while True:
            message = json.loads(ws.recv(120))
            if message["type"] == "stdout":
                stdout.append(message["data"])
                if behaviour.kill_after and behaviour.kill_after in "".join(stdout):
                    ws.send(json.dumps({"type": "kill"}))
                    behaviour = dataclasses.replace(behaviour, kill_after=None)
            if message["type"] == "state" and message["state"] in ("FINISHED", "TERMINATED"):
                break
    text = "".join(stdout)
    if message["reason"] != behaviour.reason:
        return message["reason"], f"{behaviour.name}: {message} stdout {text[:80]!r}"
    if behaviour.exit_code is not None and message["exitCode"] != behaviour.exit_code:
        return "wrong exit code", f"{behaviour.name}: {message}"
    if behaviour.stdout is not None and text != behaviour.stdout:
        return "wrong output", f"{behaviour.name}: {text[:120]!r}"
    return "ok", ""


def client_loop(url: str, stop: float, tally: Tally, restart: dict, rng: random.Random) -> None:
    while time.monotonic() < stop:
        behaviour = rng.choice(BEHAVIOURS)
        began = time.monotonic()
        try:
            kind, detail = one_session(url, behaviour)
        except Exception as exc:  # noqa: BLE001 - a failure of any kind is counted
            kind, detail = type(exc).__name__, f"{behaviour.name}: {exc}"[:200]
        ended = time.monotonic()
        overlaps = (
            restart["from"] is not None and began <= (restart["to"] or ended) and ended >= restart["from"]
        )
        with tally.lock:
            tally.served += 1
            if kind == "ok":
                tally.ok += 1
            elif overlaps and kind in ("internal_error", "http 503", "http 429", "ConnectionClosedError"):
                tally.during_restart[kind] += 1
            else:
                tally.failures[kind] += 1
                if len(tally.examples) < 10:
                    tally.examples.append(detail)
        if kind != "ok" and not overlaps:
            time.sleep(0.5)


def wait_ready(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/readyz", timeout=10).status_code == 200:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.2)
    return False


def restart_dockerd(restart: dict, url: str) -> dict:
    """Stop dockerd, start it again, and time how long the server takes to be ready again."""
    pid = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True).stdout.split()
    restart["from"] = time.monotonic()
    for p in pid:
        os.kill(int(p), signal.SIGTERM)
    # A daemon stopping kills its containers first: with 50 sessions that takes a while.
    for _ in range(1200):
        if not subprocess.run(["pidof", "dockerd"], capture_output=True).stdout:
            break
        time.sleep(0.1)
    unready = requests.get(f"{url}/readyz", timeout=10).status_code
    subprocess.run([os.path.join(ROOT, "scripts", "dockerd.sh")], check=True)
    wait_ready(url, 120)
    restart["to"] = time.monotonic()
    return {"readyz while down": unready, "ready again after": f"{restart['to'] - restart['from']:.1f} s"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (600)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent sessions (50)")
    parser.add_argument("--markdown", default=None, help="replace the soak section of this file")
    parser.add_argument("--no-restart", action="store_true", help="leave dockerd alone")
    args = parser.parse_args(argv)

    state = tempfile.mkdtemp(prefix="soak-state-")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SANDBOX_ENGINE_STATE_DIR": state}
    log = open(os.path.join(state, "server.log"), "w")
    server = subprocess.Popen(
        [os.path.join(VENV_BIN, "sandbox-engine"), "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"]
        + ["--instance", INSTANCE, "--pool-size", "python=8,python/tty=4", "--max-sessions", "80"]
        + ["--output-limit", "200k", "--idle-timeout", "20", "--run-timeout", "60"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_ready(url, 60)
        time.sleep(5)  # the pool fills
        rss_start = worker_rss(server.pid)
        tally, restart = Tally(), {"from": None, "to": None}
        stop = time.monotonic() + args.duration
        threads = [
            threading.Thread(
                target=client_loop, args=(url, stop, tally, restart, random.Random(i)), daemon=True
            )
            for i in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        restart_facts: dict = {}
        if not args.no_restart:
            time.sleep(args.duration / 2)
            print("soak: restarting dockerd", file=sys.stderr)
            restart_facts = restart_dockerd(restart, url)
        for thread in threads:
            thread.join(args.duration + 300)
        time.sleep(5)  # the last removals
        rss_end = worker_rss(server.pid)
        after_load = sum(len(files) for _, _, files in os.walk(state))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
    left = containers()
    report = {
        "duration": args.duration,
        "clients": args.clients,
        "served": tally.served,
        "ok": tally.ok,
        "failures": dict(tally.failures),
        "during the restart": dict(tally.during_restart),
        "examples": tally.examples,
        "restart": restart_facts,
        "containers left": len(left),
        "worker rss start MB": round(rss_start / 2**20),
        "worker rss end MB": round(rss_end / 2**20),
        "state files after the load": after_load,
    }
    print(json.dumps(report, indent=2))
    if args.markdown:
        write_markdown(args.markdown, report)
    shutil.rmtree(state, ignore_errors=True)
    return 0 if not tally.failures and not left else 1


def write_markdown(path: str, report: dict) -> None:
    failures = ", ".join(f"{k}: {v}" for k, v in report["failures"].items()) or "none"
    restart = ", ".join(f"{k}: {v}" for k, v in report["during the restart"].items()) or "none"
    facts = ", ".join(f"{k}: {v}" for k, v in report["restart"].items()) or "not restarted"
    lines = [
        SECTION_START,
        "## Soak",
        "",
        f"Measured {date.today().isoformat()} on {platform.machine()}, {os.cpu_count()} cores, with "
        f"`make soak` ({report['clients']} concurrent interactive sessions of nine behaviours in six "
        f"languages for {report['duration']:.0f} s, dockerd restarted once half way):",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| sessions served | {report['served']} |",
        f"| as expected | {report['ok']} |",
        f"| failures (unexpected outcomes) | {failures} |",
        f"| ended by the daemon's restart (expected) | {restart} |",
        f"| the restart | {facts} |",
        f"| containers left at the end | {report['containers left']} |",
        f"| worker RSS, start / end | {report['worker rss start MB']} MB / "
        f"{report['worker rss end MB']} MB |",
        f"| files in the state directory after the load | {report['state files after the load']} |",
        SECTION_END,
    ]
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    if SECTION_START in text:
        head, _, rest = text.partition(SECTION_START)
        text = head + "\n".join(lines) + rest.partition(SECTION_END)[2]
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    sys.exit(main())
