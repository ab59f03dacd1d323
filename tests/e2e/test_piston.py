"""Piston v2's API through the real server, as Piston's clients use it: its WebSocket
/api/v2/connect on our sessions, /api/v2/runtimes, /api/v2/execute on the batch runs, and a
published Piston client library (ultra-piston, from PyPI) pointed at us."""

from __future__ import annotations

import json
import time

import described
import pytest
import requests
from harness import LANGUAGE_IDS
from ultra_piston import File, PistonClient
from ultra_piston.errors import BadRequestError
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

# Every test here runs a real server on the real Docker daemon.
pytestmark = [pytest.mark.docker, pytest.mark.slow]

GREET = 'name = input("Name: ")\nprint("Hello", name)\n'


class Connection:
    """A Piston /connect client: every message it got, and how the server closed."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.messages: list[dict] = []

    def send(self, message: dict) -> None:
        self.ws.send(json.dumps(message))

    def read_until(self, predicate, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(max(0.01, deadline - time.monotonic())))
            self.messages.append(message)
            described.check_message("PistonConnectServerMessage", message)
            if predicate(message):
                return message

    def read_to_close(self, timeout: float = 60) -> tuple[int | None, str | None]:
        try:
            self.read_until(lambda message: False, timeout)
        except ConnectionClosed:
            pass
        return self.ws.close_code, self.ws.close_reason

    def stdout(self) -> str:
        return "".join(m["data"] for m in self.messages if m["type"] == "data" and m["stream"] == "stdout")

    def of_type(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind]


@pytest.fixture
def piston_connect(server):
    """Open /api/v2/connect, and send an init when given its fields; closed after the test."""
    opened: list[ClientConnection] = []

    def open_connection(**init) -> Connection:
        ws = connect(f"{server.ws_url}/api/v2/connect", open_timeout=10).__enter__()
        opened.append(ws)
        connection = Connection(ws)
        if init:
            connection.send({"type": "init", "version": "*", **init})
        return connection

    yield open_connection
    for ws in opened:
        ws.close()


# --- /api/v2/connect: works on our interactive sessions -------------------------------------


def test_connect_runs_an_interactive_program_as_piston_does(piston_connect):
    client = piston_connect(language="py", files=[{"content": GREET}])
    runtime = client.read_until(lambda m: m["type"] == "runtime")
    assert runtime["language"] == "python" and runtime["version"].startswith("3.11.")
    client.read_until(lambda m: m["type"] == "data" and "Name: " in client.stdout())
    client.send({"type": "data", "stream": "stdin", "data": "Ada\n"})
    assert client.read_to_close() == (4999, "Job Completed")
    assert client.stdout() == "Name: Hello Ada\n"
    assert [m["type"] for m in client.messages if m["type"] != "data"] == ["runtime", "stage", "exit"]
    assert client.of_type("stage") == [{"type": "stage", "stage": "run"}]
    assert client.of_type("exit") == [{"type": "exit", "stage": "run", "code": 0, "signal": None}]


def test_connect_compiles_then_runs_a_compiled_language(piston_connect):
    program = '#include <stdio.h>\nint main(void) { printf("%d\\n", 6 * 7); return 3; }\n'
    client = piston_connect(language="c", files=[{"name": "main.c", "content": program}])
    assert client.read_to_close() == (4999, "Job Completed")
    assert [m for m in client.messages if m["type"] in ("stage", "exit")] == [
        {"type": "stage", "stage": "compile"},
        {"type": "exit", "stage": "compile", "code": 0, "signal": None},
        {"type": "stage", "stage": "run"},
        {"type": "exit", "stage": "run", "code": 3, "signal": None},
    ]
    assert client.stdout() == "42\n"


def test_connect_reports_a_failed_compile_and_runs_nothing(piston_connect):
    client = piston_connect(language="c++", files=[{"content": "int main() { return x; }\n"}])
    assert client.read_to_close() == (4999, "Job Completed")
    [exited] = client.of_type("exit")
    assert exited["stage"] == "compile" and exited["code"] != 0
    assert client.of_type("stage") == [{"type": "stage", "stage": "compile"}]
    stderr = "".join(m["data"] for m in client.messages if m["type"] == "data" and m["stream"] == "stderr")
    assert "error" in stderr


def test_connect_sends_signals_to_the_program(piston_connect):
    program = 'import time\nprint("ready", flush=True)\nwhile True:\n    time.sleep(0.05)\n'
    client = piston_connect(language="python", files=[{"content": program}])
    client.read_until(lambda m: m["type"] == "data" and "ready" in client.stdout())
    client.send({"type": "signal", "signal": "SIGINT"})
    assert client.read_to_close() == (4999, "Job Completed")
    assert client.of_type("exit") == [{"type": "exit", "stage": "run", "code": None, "signal": "SIGINT"}]


def test_connect_kills_a_run_past_the_timeout_it_asked_for(piston_connect):
    program = 'import time\nprint("ready", flush=True)\ntime.sleep(60)\n'
    client = piston_connect(language="python", files=[{"content": program}], run_timeout=1500)
    client.read_until(lambda m: m["type"] == "data")
    started = time.monotonic()
    assert client.read_to_close() == (4999, "Job Completed")
    assert time.monotonic() - started < 10
    assert client.of_type("exit") == [{"type": "exit", "stage": "run", "code": None, "signal": "SIGKILL"}]


def test_connect_refuses_as_piston_does(piston_connect):
    client = piston_connect(language="cobol", files=[{"content": "x"}])
    assert client.read_to_close() == (4002, "Notified Error")
    assert client.messages == [{"type": "error", "message": "cobol-* runtime is unknown"}]
    client = piston_connect(language="python", files=[{"content": "x"}], run_timeout=10**9)
    assert client.read_to_close() == (4002, "Notified Error")
    assert client.messages[0]["message"] == "run_timeout cannot exceed the configured limit of 12000"
    client = piston_connect()
    client.send({"type": "data", "stream": "stdin", "data": "x"})
    assert client.read_to_close() == (4003, "Not yet initialized")


def test_connect_leaves_no_session_behind_when_the_client_goes_away(server, piston_connect):
    client = piston_connect(language="python", files=[{"content": "input()\n"}])
    client.read_until(lambda m: m["type"] == "stage")
    client.ws.close()
    assert server.wait_no_containers(timeout=15, pool_too=False) == []


def test_connect_from_a_foreign_origin_is_refused_before_the_upgrade(server):
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        "Origin": "https://evil.example",
    }
    response = requests.get(f"{server.url}/api/v2/connect", headers=headers, timeout=10)
    assert response.status_code == 403 and "evil.example" in response.json()["message"]


# --- /api/v2/runtimes and the refusals of /api/v2/execute: work without the batch runs ------


def test_runtimes_list_every_language_under_pistons_names(server):
    runtimes = requests.get(f"{server.url}/api/v2/runtimes", timeout=10).json()
    assert len(runtimes) == len(LANGUAGE_IDS)
    python = runtimes[0]
    assert python["language"] == "python" and python["version"].startswith("3.11.")
    assert {"py", "python3"} <= set(python["aliases"])
    assert {rt["language"] for rt in runtimes} >= {"c", "c++", "csharp", "javascript", "typescript"}


def test_execute_refuses_what_piston_refuses(server):
    url = f"{server.url}/api/v2/execute"
    hello = {"language": "python", "version": "*", "files": [{"content": "print(1)"}]}
    answer = requests.post(url, json={**hello, "language": "cobol"}, timeout=10)
    assert (answer.status_code, answer.json()) == (400, {"message": "cobol-* runtime is unknown"})
    answer = requests.post(url, json={**hello, "run_timeout": 12001}, timeout=10)
    assert answer.json() == {"message": "run_timeout cannot exceed the configured limit of 12000"}
    answer = requests.post(url, data=json.dumps(hello), timeout=10)
    assert (answer.status_code, answer.json()) == (
        415,
        {"message": "requests must be of type application/json"},
    )


def piston_client(server) -> PistonClient:
    """ultra-piston, from PyPI, pointed at our server instead of Piston's."""
    return PistonClient(base_url=f"{server.url}/api/v2/", rate_limit=0)


def test_a_published_piston_client_lists_our_runtimes_and_reads_our_refusals(server):
    client = piston_client(server)
    runtimes = client.get_runtimes()
    assert [rt.language for rt in runtimes][:2] == ["python", "javascript"]
    assert runtimes[1].runtime == "node" and "js" in runtimes[1].aliases
    with pytest.raises(BadRequestError):
        client.post_execute(language="cobol", version="*", file=File(content="x"))


# --- /api/v2/execute: needs the batch runs (runs.Runs) --------------------------------------


def execute(server, **body) -> dict:
    answer = requests.post(f"{server.url}/api/v2/execute", json={"version": "*", **body}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_execute_runs_a_program_with_stdin_and_args(server):
    program = "import sys\nprint(input().upper(), sys.argv[1:])\n"
    answer = execute(server, language="py", files=[{"content": program}], stdin="ada", args=["-x", "y z"])
    assert answer["language"] == "python" and answer["version"].startswith("3.11.")
    assert "compile" not in answer
    run = answer["run"]
    assert (run["stdout"], run["stderr"], run["code"], run["signal"], run["status"]) == (
        "ADA ['-x', 'y z']\n",
        "",
        0,
        None,
        None,
    )
    assert run["output"] == run["stdout"]
    assert run["wall_time"] > 0 and run["cpu_time"] > 0 and run["memory"] > 0


def test_execute_compiles_and_runs_c_and_reports_a_runtime_error(server):
    program = '#include <stdio.h>\nint main(void) { puts("hi"); return 4; }\n'
    answer = execute(server, language="gcc", files=[{"name": "main.c", "content": program}])
    assert answer["compile"]["code"] == 0
    run = answer["run"]
    assert (run["stdout"], run["code"], run["status"], run["message"]) == (
        "hi\n",
        4,
        "RE",
        "Exited with error status 4",
    )


def test_execute_answers_a_failed_compile_as_both_stages(server):
    answer = execute(server, language="c++", files=[{"content": "int main() { return x; }\n"}])
    assert answer["run"] == answer["compile"]
    assert answer["compile"]["status"] == "RE" and "error" in answer["compile"]["stderr"]


def test_execute_kills_a_program_at_the_timeout_it_asked_for(server):
    answer = execute(server, language="python", files=[{"content": "while True: pass\n"}], run_timeout=1000)
    assert (answer["run"]["status"], answer["run"]["signal"]) == ("TO", "SIGKILL")


def test_execute_decodes_base64_files_and_replaces_bytes_that_are_not_utf8(server):
    program = "import sys\nsys.stdout.buffer.write(open('data.bin', 'rb').read())\n"
    files = [{"content": program}, {"name": "data.bin", "content": "aGkg/w==", "encoding": "base64"}]
    assert execute(server, language="python", files=files)["run"]["stdout"] == "hi \ufffd"


def test_a_published_piston_client_runs_code_on_our_server(server):
    client = piston_client(server)
    python = client.get_runtimes()[0]
    answer = client.post_execute(
        language=python.language,
        version=python.version,
        file=File(name="main.py", content=GREET),
        stdin="Ada",
    )
    assert (answer.language, answer.version) == ("python", python.version)
    assert answer.run.stdout == "Name: Hello Ada\n" and answer.run.code == 0
    assert answer.compile is None
