"""`sandbox-engine bench-languages`: every language's hello world, warm (a pool) and cold (none),
beside its own floor, the same compile and run in a plain `docker run` of the same image.

Each figure is the time to the first output byte, split where it can be seen from outside: for a
session, POST /session, then to COMPILING (the compile stage starts), then to RUNNING (it ended),
then to the first `stdout`; for the floor, the container's start (until its script's first
instruction), the compile, and the run until its first byte (stamped from inside, on the same
clock). Writes its own section of BENCHMARKS.md, after `make bench`'s part (which keeps what
follows its KEEP_FROM marker), and keeps everything else.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from .bench import KEEP_FROM
from .bench_client import Client
from .bench_settle import wait_for_pool
from .docker_executor import WORKDIR
from .executor import SANDBOX_USER
from .languages import LANGUAGES, LanguageSpec

HELLO = {
    "python": "print('hi')\n",
    "javascript": "console.log('hi');\n",
    "typescript": "const greeting: string = 'hi';\nconsole.log(greeting);\n",
    "c": '#include <stdio.h>\nint main(void) { puts("hi"); return 0; }\n',
    "cpp": '#include <iostream>\nint main() { std::cout << "hi" << std::endl; }\n',
    "go": 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hi") }\n',
    "rust": 'fn main() { println!("hi"); }\n',
    "java": 'public class Main { public static void main(String[] a) { System.out.println("hi"); } }\n',
    "ruby": "puts 'hi'\n",
    "php": '<?php echo "hi\\n";\n',
    "perl": 'print "hi\\n";\n',
    "lua": 'print("hi")\n',
    "bash": "echo hi\n",
    "csharp": 'class P { static void Main() { System.Console.WriteLine("hi"); } }\n',
    "haskell": 'main :: IO ()\nmain = putStrLn "hi"\n',
}
BEGIN = "<!-- languages: written by sandbox-engine bench-languages -->"
END = "<!-- /languages -->"
# The target: no language's warm first output above this times its floor's compile plus run.
TARGET_RATIO = 1.2


@dataclass
class Split:
    """One measurement: its total and its parts, in seconds, each part from the previous mark."""

    total: float
    parts: dict[str, float] = field(default_factory=dict)


def _median(splits: list[Split]) -> Split:
    """The run whose total is the median's, with its own split (parts of one run add up)."""
    ordered = sorted(splits, key=lambda s: s.total)
    return ordered[(len(ordered) - 1) // 2]


def session(client: Client, language: str) -> Split:
    """Seconds from POST /session to the first stdout message, split at the states."""
    started = time.perf_counter()
    response = client.http.post(
        f"{client.server}/session", json={"language": language, "code": HELLO[language]}, timeout=120
    )
    response.raise_for_status()
    marks = {"POST": time.perf_counter()}
    ws = client.attach(response.json()["sessionId"])
    try:
        while True:
            message = json.loads(ws.recv(300))
            if message["type"] == "state" and message["state"] in ("COMPILING", "RUNNING"):
                marks[message["state"]] = time.perf_counter()
            elif message["type"] == "state" and message["state"] in ("FINISHED", "TERMINATED"):
                raise RuntimeError(f"{language} ended before its output: {message}")
            elif message["type"] == "stdout":
                marks["output"] = time.perf_counter()
                break
        while True:
            message = json.loads(ws.recv(120))
            if message["type"] == "state" and message["state"] in ("FINISHED", "TERMINATED"):
                break
    finally:
        ws.close()
    parts, previous = {}, started
    for name, at in marks.items():
        parts[name], previous = at - previous, at
    return Split(marks["output"] - started, parts)


def floor(spec: LanguageSpec) -> Split:
    """The same compile and run in a plain `docker run` of the language's image, as the sandbox's
    user, in a tmpfs workspace: to the program's first byte, split by stamps from inside."""
    stamp = "date +%s%N"
    compile_line = shlex.join(spec.compile) if spec.compile else ":"
    script = (
        f"{stamp}; cat > {shlex.quote(spec.source_file)}; {compile_line} >&2 || exit; {stamp}; "
        f"exec {shlex.join(spec.run)}"
    )
    env = [arg for name, value in spec.env.items() for arg in ("-e", f"{name}={value}")]
    command = [
        *("docker", "run", "--rm", "-i", "--network", "none", "--user", SANDBOX_USER, "--read-only"),
        *("--tmpfs", f"{WORKDIR}:rw,exec,uid={SANDBOX_USER.split(':')[0]},mode=0700"),
        *("--tmpfs", "/tmp:rw,exec,mode=1777", "-w", WORKDIR, *env, spec.image, "sh", "-c", script),
    ]
    started = time.time()
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(HELLO[spec.id].encode())
    process.stdin.close()
    inside = int(process.stdout.readline()) / 1e9
    compiled = int(process.stdout.readline()) / 1e9
    process.stdout.read(1)
    output = time.time()
    process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"{spec.id}'s floor failed: {process.returncode}")
    parts = {"start": inside - started, "compile": compiled - inside, "run": output - compiled}
    return Split(output - started, parts)


@dataclass
class Row:
    language: str
    warm: Split | None
    cold: Split | None
    floor: Split

    @property
    def compile_and_run(self) -> float:
        return self.floor.parts["compile"] + self.floor.parts["run"]

    @property
    def ratio(self) -> float | None:
        return self.warm.total / self.compile_and_run if self.warm else None

    @property
    def ratio_to_docker_run(self) -> float | None:
        return self.warm.total / self.floor.total if self.warm else None


def measure(
    warm: str | None, cold: str | None, languages: list[str], runs: int, say: Callable[[str], None]
) -> list[Row]:
    warm_client, cold_client = (Client(s) if s else None for s in (warm, cold))
    rows = []
    for language in languages:
        spec = LANGUAGES[language]
        floor(spec)  # warm-up: the image's files in the page cache, as the servers' are
        floors = [floor(spec) for _ in range(runs)]
        warms, colds = [], []
        for _ in range(runs):
            if warm_client:
                wait_for_pool(warm_client, timeout=120)
                warms.append(session(warm_client, language))
            if cold_client:
                colds.append(session(cold_client, language))
        row = Row(
            language, _median(warms) if warms else None, _median(colds) if colds else None, _median(floors)
        )
        say(f"{language}: {_cell(row.warm)} warm, {_cell(row.cold)} cold, floor {_cell(row.floor)}")
        # Every sample, for whoever reads the run's log (the table keeps medians).
        say(json.dumps({"language": language, "warm": warms, "cold": colds, "floor": floors}, default=vars))
        rows.append(row)
    return rows


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def _cell(split: Split | None) -> str:
    if split is None:
        return "-"
    return f"{_ms(split.total)} ({' + '.join(f'{k} {_ms(v)}' for k, v in split.parts.items())})"


def table(rows: list[Row]) -> str:
    lines = [
        "| language | warm (pool) | cold (no pool) | `docker run`: start + compile + run | "
        f"warm / floor's compile + run (target ≤ {TARGET_RATIO}) | warm / `docker run` |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio, whole = row.ratio, row.ratio_to_docker_run
        verdict = "-" if ratio is None else f"{ratio:.2f} {'✓' if ratio <= TARGET_RATIO else '✗'}"
        lines.append(
            f"| {LANGUAGES[row.language].name} | {_cell(row.warm)} | {_cell(row.cold)} | "
            f"{_cell(row.floor)} | {verdict} | {'-' if whole is None else f'{whole:.2f}'} |"
        )
    return "\n".join(lines)


def section(rows: list[Row], runs: int, command: str) -> str:
    ratios = [r.ratio for r in rows if r.ratio is not None]
    worst = f"Worst ratio: {max(ratios):.2f}.\n" if ratios else ""
    return (
        f"{BEGIN}\n## Every language: hello world, warm, cold and its floor\n\n"
        f"Measured {date.today().isoformat()} with `{command}` (`scripts/bench.sh` runs it after "
        f"`make bench`'s part): the median of {runs} runs each, in ms, to the first output byte. "
        "A session's split: POST /session, to COMPILING (the compile stage starts), to RUNNING "
        "(it ended, the program starts), to the first `stdout` message. The floor's: the "
        "container's start until its script's first instruction, the compile, the run until its "
        "first byte (stamped inside, same clock). The ratio is the warm figure over the floor's "
        "compile plus run: what the toolchain itself costs on this machine.\n\n"
        f"{table(rows)}\n\n{worst}{END}\n"
    )


def write(markdown: str, text: str) -> None:
    """This section in place of its previous one, else at the end: after make bench's part
    (KEEP_FROM on), which bench.py keeps when it rewrites the rest."""
    try:
        with open(markdown) as f:
            old = f.read()
    except FileNotFoundError:
        old = f"# Benchmarks\n\n{KEEP_FROM} -->\n"
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        new = head + text.rstrip("\n") + rest.split(END, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + text
    with open(markdown, "w") as f:
        f.write(new)


def main(
    warm: str | None, cold: str | None, languages: list[str] | None, runs: int, markdown: str | None
) -> int:
    chosen = languages or list(LANGUAGES)
    rows = measure(warm, cold, chosen, runs, lambda line: print(line, file=sys.stderr))
    command = " ".join(["sandbox-engine", *sys.argv[1:]]) if sys.argv else "sandbox-engine bench-languages"
    text = section(rows, runs, command)
    print(text)
    if markdown:
        write(markdown, text)
    # The targets' verdicts are in the table, as make bench's are: a miss is a finding, not a failure.
    return 0
