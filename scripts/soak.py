"""`make soak`: 50 concurrent interactive sessions of mixed languages and behaviours for ten
minutes, with dockerd restarted once in the middle, against a real server on loopback.

Every session's transcript is checked against what its program must produce. Sessions that
overlap the daemon's restart may end `internal_error` or be refused (503); any other outcome is a
failure. At the end: containers left (must be 0), the workers' memory at start and end, and the
files in the state directory. The load runs in phases (--phases), stopped after each while the
workers' RSS and fds are measured (with --probe, their live objects and glibc's heap too; see
sandbox_engine/memprobe.py). The report replaces the soak section of BENCHMARKS.md.
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
    Behaviour(
        "input-driven-php",
        "php",
        "<?php\nwhile (($line = readline('? ')) !== false) {\n    echo 'php ', $line, \"\\n\";\n}\n",
        ("x\n", "y\n"),
        "? php x\n? php y\n? ",
        "exited",
        0,
        eof=True,
    ),
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


def children(master_pid: int) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == master_pid:
                    found.append(int(pid))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return sorted(found)


def rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    except (FileNotFoundError, ProcessLookupError, StopIteration, ValueError):
        return 0


def worker_rss(master_pid: int) -> int:
    """The master's RSS and its workers'."""
    return rss(master_pid) + sum(rss(pid) for pid in children(master_pid))


def measure(master_pid: int, probe_dir: str | None) -> dict:
    """Each worker's RSS and open fds; with the memory probe on (see memprobe), its dump too."""
    workers = children(master_pid)
    facts: dict = {"total rss": worker_rss(master_pid), "workers": {}}
    before = set(os.listdir(probe_dir)) if probe_dir else set()
    for pid in workers:
        try:
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            fds = -1
        facts["workers"][pid] = {"rss": rss(pid), "fds": fds}
        if probe_dir:
            os.kill(pid, signal.SIGUSR2)
    if probe_dir:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            new = set(os.listdir(probe_dir)) - before
            if len(new) >= len(workers):
                break
            time.sleep(0.5)
        time.sleep(1)  # the last one written whole
        for name in sorted(set(os.listdir(probe_dir)) - before):
            with open(os.path.join(probe_dir, name)) as f:
                dump = json.load(f)
            facts["workers"].setdefault(dump["pid"], {})["probe"] = dump
    return facts


def containers(instance: str = INSTANCE) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=sandbox-engine.instance={instance}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.split()


def listing_ghosts(ids: list[str]) -> list[str]:
    """Of the containers Docker lists, those it no longer has: inspect answers "no such
    container", and their directory is gone. Docker 20.10 leaves one such row ("Removal In
    Progress") now and then after a container's removal, until dockerd restarts."""
    ghosts = []
    for container in ids:
        out = subprocess.run(["docker", "inspect", container], capture_output=True, text=True, check=False)
        if out.returncode != 0 and "No such object" in out.stderr:
            ghosts.append(container)
    return ghosts


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


def run_clients(url: str, clients: int, seconds: float, tally: Tally, restart: dict, seed: int) -> None:
    stop = time.monotonic() + seconds
    threads = [
        threading.Thread(
            target=client_loop, args=(url, stop, tally, restart, random.Random(seed + i)), daemon=True
        )
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 300)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (600)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent sessions (50)")
    parser.add_argument("--markdown", default=None, help="replace the soak section of this file")
    parser.add_argument("--no-restart", action="store_true", help="leave dockerd alone")
    parser.add_argument(
        "--phases",
        type=int,
        default=3,
        help="split the load into this many equal phases, with the load stopped and the workers "
        "measured after each: a leak grows by the same each phase, a high-water mark levels off (3)",
    )
    parser.add_argument("--instance", default=INSTANCE, help=f"the server's instance ({INSTANCE})")
    parser.add_argument(
        "--probe",
        action="store_true",
        help="dump the workers' live objects (and tracemalloc's, with PYTHONTRACEMALLOC) per phase",
    )
    parser.add_argument("--report", default=None, help="write the full report, as JSON, to this file")
    args = parser.parse_args(argv)

    state = tempfile.mkdtemp(prefix="soak-state-")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SANDBOX_ENGINE_STATE_DIR": state}
    probe_dir = os.path.join(state, "probe") if args.probe else None
    if probe_dir:
        env["SANDBOX_ENGINE_MEMPROBE"] = probe_dir
    log = open(os.path.join(state, "server.log"), "w")
    server = subprocess.Popen(
        [os.path.join(VENV_BIN, "sandbox-engine"), "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"]
        + ["--instance", args.instance, "--pool-size", "python=8,python/tty=4,ruby=2,php=2,c=2"]
        + ["--max-sessions", "80"]
        + ["--output-limit", "200k", "--idle-timeout", "20", "--run-timeout", "60"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    phases: list[dict] = []
    try:
        wait_ready(url, 60)
        time.sleep(5)  # the pool fills
        # Every worker has served a request (the machinery starts on the first one).
        for _ in range(10):
            requests.get(f"{url}/languages", timeout=10)
        phases.append({"served": 0, **measure(server.pid, probe_dir)})
        rss_start = phases[0]["total rss"]
        tally, restart = Tally(), {"from": None, "to": None}
        restart_facts: dict = {}
        restarter = None
        if not args.no_restart:

            def restart_later() -> None:
                time.sleep(args.duration / 2)
                print("soak: restarting dockerd", file=sys.stderr)
                restart_facts.update(restart_dockerd(restart, url))

            restarter = threading.Thread(target=restart_later, daemon=True)
            restarter.start()
        for phase in range(args.phases):
            run_clients(url, args.clients, args.duration / args.phases, tally, restart, phase * args.clients)
            time.sleep(5)  # the last removals
            phases.append({"served": tally.served, **measure(server.pid, probe_dir)})
            print(f"soak: phase {phase + 1}: {phase_line(phases)}", file=sys.stderr)
        if restarter is not None:
            restarter.join(args.duration + 300)
        rss_end = phases[-1]["total rss"]
        after_load = sum(len(files) for _, _, files in os.walk(state))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
    listed = containers(args.instance)
    ghosts = listing_ghosts(listed)
    left = [container for container in listed if container not in ghosts]
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
        "listing ghosts": len(ghosts),
        "worker rss start MB": round(rss_start / 2**20),
        "worker rss end MB": round(rss_end / 2**20),
        "rss per phase MB": [round(p["total rss"] / 2**20) for p in phases],
        "phases": [phase_line(phases[: i + 1]) for i in range(len(phases))],
        "state files after the load": after_load,
    }
    print(json.dumps(report, indent=2))
    if args.report:
        with open(args.report, "w") as f:
            json.dump({**report, "measurements": phases}, f, indent=1, default=str)
    if args.markdown:
        write_markdown(args.markdown, report)
    shutil.rmtree(state, ignore_errors=True)
    return 0 if not tally.failures and not left else 1


def phase_line(phases: list[dict]) -> str:
    """The last measurement: sessions served, and each worker's RSS and fds, with growth."""
    last, first = phases[-1], phases[0]
    parts = [f"{last['served']} sessions, total {last['total rss'] / 2**20:.0f} MB"]
    for pid, w in last["workers"].items():
        grew = (w.get("rss", 0) - first["workers"].get(pid, {}).get("rss", 0)) / 2**20
        line = f"worker {pid}: {w.get('rss', 0) / 2**20:.0f} MB (+{grew:.0f}), {w.get('fds')} fds"
        probe = w.get("probe")
        if probe:
            line += f", {probe['objects']} objects, runs {probe.get('runs')}"
        parts.append(line)
    return "; ".join(parts)


def write_markdown(path: str, report: dict) -> None:
    failures = ", ".join(f"{k}: {v}" for k, v in report["failures"].items()) or "none"
    restart = ", ".join(f"{k}: {v}" for k, v in report["during the restart"].items()) or "none"
    facts = ", ".join(f"{k}: {v}" for k, v in report["restart"].items()) or "not restarted"
    restarted = "dockerd restarted once half way" if report["restart"] else "dockerd left alone"
    per_phase = report["rss per phase MB"]
    phases = (
        [
            f"| worker RSS at the start, then after each of {len(per_phase) - 1} phases (load stopped) | "
            + " / ".join(f"{mb} MB" for mb in per_phase)
            + " |"
        ]
        if len(per_phase) > 2
        else []
    )
    lines = [
        SECTION_START,
        "## Soak",
        "",
        f"Measured {date.today().isoformat()} on {platform.machine()}, {os.cpu_count()} cores, with "
        f"`make soak` ({report['clients']} concurrent interactive sessions of {len(BEHAVIOURS)} behaviours "
        f"in {len({b.language for b in BEHAVIOURS})} languages for {report['duration']:.0f} s, {restarted}):",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| sessions served | {report['served']} |",
        f"| as expected | {report['ok']} |",
        f"| failures (unexpected outcomes) | {failures} |",
        f"| ended by the daemon's restart (expected) | {restart} |",
        f"| the restart | {facts} |",
        f"| containers left at the end | {report['containers left']} |",
        f"| dockerd's listing ghosts (listed, but no such container) | {report.get('listing ghosts', 0)} |",
        f"| worker RSS, start / end | {report['worker rss start MB']} MB / "
        f"{report['worker rss end MB']} MB |",
        *phases,
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
