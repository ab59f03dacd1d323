"""Batch runs (POST /run) through the real server and daemon: results, usage, tests, limits."""

from __future__ import annotations

import base64
import time

import pytest
import requests
from harness import GVISOR, shutdown, start_server

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CPP = r"""
#include <iostream>
int main() { long a, b; std::cin >> a >> b; std::cout << a + b << "\n"; }
"""


def run(server, timeout: float = 90, **body) -> dict:
    response = requests.post(f"{server.url}/run", json=body, timeout=timeout)
    assert response.status_code == 200, response.text
    return response.json()


def test_hello_world_answers_its_output_status_and_usage(server):
    result = run(
        server, language="python", code="import sys\nprint('hello')\nprint('oops', file=sys.stderr)\n"
    )
    assert result["language"] == "python" and result["version"].startswith("3.11.")
    assert result["compile"] is None
    stage = result["run"]
    assert (stage["status"], stage["exitCode"], stage["signal"]) == ("ok", 0, None)
    assert (stage["stdout"], stage["stderr"]) == ("hello\n", "oops\n")
    assert stage["truncated"] == {"stdout": False, "stderr": False}
    assert set(stage["usage"]) == {"cpuTimeMs", "wallTimeMs", "memoryPeakBytes"}
    assert 0 <= stage["usage"]["cpuTimeMs"] < 2000 and stage["usage"]["memoryPeakBytes"] > 1 << 20
    if not GVISOR:
        # gVisor counts a program's CPU time in whole ticks of its clock (10 ms: 40.0 ms and 0.0
        # seen): a first test that runs in the warm interpreter uses less than one, and may be
        # charged none. Under runc the kernel's count is exact.
        assert stage["usage"]["cpuTimeMs"] > 0


@pytest.fixture(scope="module")
def patient(docker_client, tmp_path_factory):
    """A server whose run timeout leaves a CPU-bound second room on a loaded machine (0.5 CPUs)."""
    server = start_server(docker_client, tmp_path_factory, workers=1, run_timeout=120)
    yield server
    shutdown(server)


def test_usage_figures_are_the_kernels(patient):
    server = patient
    touch = run(server, language="python", code="data = b'x' * (100 << 20)\nprint(len(data))\n")["run"]
    assert touch["usage"]["memoryPeakBytes"] >= 100 << 20
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1: pass\n"
    busy = run(server, language="python", code=spin)["run"]
    assert busy["status"] == "ok" and busy["usage"]["cpuTimeMs"] >= 900
    sleepy = run(server, language="bash", code="sleep 1\n")["run"]
    assert sleepy["usage"]["cpuTimeMs"] < 100 and sleepy["usage"]["wallTimeMs"] >= 1000


def test_a_compiled_program_compiles_once_and_runs_per_test(server):
    tests = [
        {"id": "one", "stdin": "1 2\n", "expectedOutput": "3\n"},
        {"id": "two", "stdin": "20 22", "expectedOutput": "42"},
        {"id": "wrong", "stdin": "2 2\n", "expectedOutput": "5\n"},
    ]
    result = run(server, language="cpp", code=CPP, tests=tests, compare="trim")
    assert result["compile"]["status"] == "ok" and result["compile"]["usage"]["cpuTimeMs"] > 0
    assert "run" not in result
    assert [(t["id"], t["verdict"], t["stdout"]) for t in result["tests"]] == [
        ("one", "accepted", "3\n"),
        ("two", "accepted", "42\n"),
        ("wrong", "wrong_answer", "4\n"),
    ]
    assert all(t["usage"]["wallTimeMs"] > 0 for t in result["tests"])


def test_a_compile_error_has_the_compilers_output_and_no_run(server):
    result = run(server, language="c", code="int main( { return 0; }\n")
    assert result["compile"]["status"] == "compile_error" and result["compile"]["exitCode"] != 0
    assert "error" in result["compile"]["stderr"]
    assert result["run"] is None


def test_each_limit_ends_its_own_test_with_its_status(server):
    code = "import sys\nmode = input()\n" + (
        "if mode == 'spin':\n    while True: pass\n"
        "if mode == 'eat':\n    data = b'x' * (400 << 20)\n"
        "if mode == 'flood':\n    print('y' * 100000)\n"
        "if mode == 'crash':\n    sys.exit(3)\n"
        "if mode == 'segv':\n    import os, signal\n    os.kill(os.getpid(), signal.SIGSEGV)\n"
        "print('fine')\n"
    )
    # Memory last: under gVisor the sandbox's kernel is what the OOM killer ends, and with it the
    # tests after (they end internal_error, "the sandbox ended in an earlier test").
    tests = [{"id": mode, "stdin": mode + "\n"} for mode in ("spin", "flood", "crash", "segv", "ok", "eat")]
    limits = {"timeoutMs": 1000, "memoryBytes": 128 << 20, "outputBytes": 1000}
    result = run(server, language="python", code=code, tests=tests, limits=limits)
    by_id = {t["id"]: t for t in result["tests"]}
    assert by_id["spin"]["status"] == "timeout" and by_id["spin"]["verdict"] == "timeout"
    assert 1000 <= by_id["spin"]["usage"]["wallTimeMs"] < 3000
    assert by_id["eat"]["status"] == "memory_limit"
    assert by_id["flood"]["status"] == "output_limit" and by_id["flood"]["truncated"]["stdout"]
    assert len(by_id["flood"]["stdout"]) <= 1000
    assert (by_id["crash"]["status"], by_id["crash"]["exitCode"]) == ("runtime_error", 3)
    assert (by_id["segv"]["status"], by_id["segv"]["signal"]) == ("runtime_error", "SIGSEGV")
    assert (by_id["ok"]["status"], by_id["ok"]["stdout"]) == ("ok", "fine\n")


def test_a_tests_background_process_cannot_write_into_the_next(server):
    code = '( sleep 0.5; echo late ) &\nread line\necho "got $line"\n'
    tests = [{"id": "a", "stdin": "1\n"}, {"id": "b", "stdin": "2\n"}]
    result = run(server, language="bash", code=code, tests=tests)
    assert [t["stdout"] for t in result["tests"]] == ["got 1\n", "got 2\n"]


def test_a_write_longer_than_a_pipe_holds_arrives_whole_in_every_test(server):
    # One write of 90,000 bytes per test, each test its own python3 under se-run but the first
    # (a warm sandbox's interpreter runs it): under gVisor a pipe takes 64 KiB per write(2), and
    # python3 -u kept only that much of it.
    code = "import sys\nn = int(input())\nsys.stdout.write(''.join(f'{i:05d}\\n' for i in range(n)))\n"
    tests = [{"id": name, "stdin": "15000"} for name in ("first", "second", "third")]
    result = run(server, language="python", code=code, tests=tests, limits={"outputBytes": 100000})
    whole = "".join(f"{i:05d}\n" for i in range(15000))
    assert [(t["id"], t["status"], t["stdout"] == whole) for t in result["tests"]] == [
        (name, "ok", True) for name in ("first", "second", "third")
    ]


def test_bytes_that_are_not_text_come_whole_as_base64(server):
    code = "import sys\nsys.stdout.buffer.write(bytes(range(256)))\n"
    stage = run(server, language="python", code=code)["run"]
    assert stage["stdout"] is None and base64.b64decode(stage["stdoutBase64"]) == bytes(range(256))


def test_files_args_and_stdin_reach_the_program(server):
    files = [
        {"name": "main.py", "content": "import sys, helper\nprint(helper.greet(input()), sys.argv[1:])\n"},
        {
            "name": "helper.py",
            "content": base64.b64encode(b"def greet(n): return 'hi ' + n\n").decode(),
            "encoding": "base64",
        },
        {"name": "data/words.txt", "content": "w"},
    ]
    stage = run(server, language="python", files=files, stdin="Ada\n", args=["-x", "two words"])["run"]
    assert stage["stdout"] == "hi Ada ['-x', 'two words']\n", stage


def test_a_run_without_wait_is_read_back_from_any_worker(server):
    body = {"language": "python", "code": "import time\ntime.sleep(0.5)\nprint('done')\n", "wait": False}
    response = requests.post(f"{server.url}/run", json=body, timeout=30)
    assert response.status_code == 202
    run_id = response.json()["runId"]
    assert response.headers["Location"] == f"/run/{run_id}"
    states = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        view = requests.get(f"{server.url}/run/{run_id}", timeout=10).json()
        states.add(view["state"])
        if view["state"] == "finished":
            break
        time.sleep(0.05)
    assert view["run"]["stdout"] == "done\n" and view["runId"] == run_id
    assert states <= {"queued", "running", "finished"}
    # Any worker answers the same (two workers: ask a few times).
    for _ in range(6):
        assert requests.get(f"{server.url}/run/{run_id}", timeout=10).json() == view
    # A run is not a session.
    assert requests.get(f"{server.url}/session/{run_id}", timeout=10).status_code == 404


def test_runs_leave_no_container(server):
    run(server, language="python", code="print(1)\n")
    assert server.wait_no_containers(timeout=10, pool_too=False) == []


def test_an_interactive_sessions_final_state_carries_usage(server):
    session_id = server.create("print('hi')\n")
    with server.attach(session_id) as ws:
        final = ws.read_to_end().final
    usage = final["usage"]
    assert usage["wallTimeMs"] > 0 and usage["memoryPeakBytes"] > 1 << 20
    assert server.session(session_id)["usage"] == usage
