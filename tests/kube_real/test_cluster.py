"""The Kubernetes executor against a real cluster: skipped unless KUBECONFIG is set.

    KUBECONFIG=~/.kube/config SANDBOX_ENGINE_NAMESPACE=sandbox-engine-sandboxes \\
      SANDBOX_ENGINE_REGISTRY=registry.example.com .venv/bin/python -m pytest tests/kube_real

The namespace must exist and the kubeconfig's user must hold deploy/kubernetes/rbac.yaml's Role
there; the nodes must be able to pull the sandbox images (see the README's "Scaling out").
SANDBOX_ENGINE_RUNTIME_CLASS runs the pods under that RuntimeClass (gVisor's). Every pod a test
makes is removed after it, whatever the test's outcome.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import pytest

from sandbox_engine.config import Config
from sandbox_engine.executor import (
    AlreadyClaimed,
    CompileResult,
    ProgramEnd,
    Sandbox,
    Started,
    Stream,
    Terminal,
)
from sandbox_engine.languages import LANGUAGES
from sandbox_engine.specs import sandbox_spec

pytestmark = pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="no cluster: KUBECONFIG is not set")

INSTANCE = f"real{uuid.uuid4().hex[:8]}"
TIMEOUT = 180.0


@pytest.fixture
def executor() -> Iterator:
    from sandbox_engine.kube_executor import KubeExecutor

    made = KubeExecutor(
        INSTANCE,
        namespace=os.environ.get("SANDBOX_ENGINE_NAMESPACE") or "default",
        runtime_class=os.environ.get("SANDBOX_ENGINE_RUNTIME_CLASS") or None,
        registry=os.environ.get("SANDBOX_ENGINE_REGISTRY") or None,
        deadline=600,
    )
    yield made
    for info in made.list():
        made.remove_sandbox(info)
    made.close()


def session(executor, language: str, tty: bool = False, config: Config | None = None) -> tuple[str, Sandbox]:
    session_id = str(uuid.uuid4())
    ref = executor.create(sandbox_spec(config or Config(), LANGUAGES[language], session_id, tty))
    return session_id, executor.claim(session_id, "p1", ref)


def drain(sandbox: Sandbox, after_compile: bytes = b"") -> tuple[dict[Stream, bytes], list]:
    """Every stream's bytes and every stage's end, going on after a compile stage."""
    seen: dict[Stream, bytes] = {Stream.STDOUT: b"", Stream.STDERR: b""}
    ends = []
    for item in sandbox.output():
        if isinstance(item, tuple):
            seen[item[0]] += item[1]
        else:
            ends.append(item)
            if isinstance(item, CompileResult) and item.exit_code == 0:
                sandbox.go()
                sandbox.write(after_compile)
                sandbox.close_stdin()
    return seen, ends


def test_a_program_reads_its_input_to_eof_and_its_exit_code_is_the_pods(executor):
    _, sandbox = session(executor, "python")
    try:
        code = (
            b"import sys\ndata = sys.stdin.read()\nprint(data.upper())\n"
            b"print('e', file=sys.stderr)\nsys.exit(3)\n"
        )
        sandbox.start(code)
        sandbox.write(b"hello")
        sandbox.close_stdin()
        seen, ends = drain(sandbox)
        assert seen == {Stream.STDOUT: b"HELLO\n", Stream.STDERR: b"e\n"}
        assert isinstance(ends[-1], ProgramEnd) and ends[-1].exit_code == 3
        assert sandbox.wait(TIMEOUT).exit_code == 3
    finally:
        sandbox.remove()


def test_a_compiled_program_runs_after_its_compile_stage(executor):
    _, sandbox = session(executor, "c")
    try:
        code = (
            b'#include <stdio.h>\nint main(void){char b[64];scanf("%63s",b);printf("hi %s\\n",b);return 0;}\n'
        )
        sandbox.start(code)
        seen, ends = drain(sandbox, after_compile=b"bob\n")
        assert isinstance(ends[0], CompileResult) and ends[0].exit_code == 0
        assert seen[Stream.STDOUT] == b"hi bob\n"
    finally:
        sandbox.remove()


def test_a_terminal_is_sized_resized_and_interrupted(executor):
    _, sandbox = session(executor, "python", tty=True)
    try:
        code = (
            b"import os, signal, sys, time\n"
            b"def size(*_):\n    print('size', tuple(os.get_terminal_size()), flush=True)\n"
            b"signal.signal(signal.SIGWINCH, size)\nsize()\n"
            b"try:\n    while True: time.sleep(0.05)\nexcept KeyboardInterrupt:\n    print('interrupted')\n"
        )
        sandbox.start(code, Terminal(cols=91, rows=33))
        output = b""
        for item in sandbox.output():
            if isinstance(item, Started):
                continue
            if isinstance(item, ProgramEnd):
                break
            output += item[1]
            if output.count(b"size") == 1 and b"(91, 33)" in output:
                sandbox.resize(100, 40)
            elif b"(100, 40)" in output and b"interrupted" not in output:
                sandbox.signal("SIGINT")
        assert b"(91, 33)" in output and b"(100, 40)" in output and b"interrupted" in output
    finally:
        sandbox.remove()


def test_a_program_over_its_memory_is_oom_killed(executor):
    _, sandbox = session(executor, "python", config=Config(memory=64 * 1024**2))
    try:
        sandbox.start(b"x = bytearray(512 * 1024 * 1024)\n")
        sandbox.close_stdin()
        drain(sandbox)
        deadline = time.monotonic() + TIMEOUT
        status = sandbox.wait(TIMEOUT)
        assert time.monotonic() < deadline
        assert status.oom_killed or status.exit_code == 137, status
    finally:
        sandbox.remove()


def test_a_second_claim_is_refused(executor):
    session_id, sandbox = session(executor, "python")
    try:
        with pytest.raises(AlreadyClaimed):
            executor.claim(session_id, "p2")
    finally:
        sandbox.remove()
