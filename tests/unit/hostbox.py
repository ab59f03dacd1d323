"""The launchers and se-run on the host, in a box shaped like a sandbox: no container, no image.

se-run (and the Python launcher after a run) kills every other process of its user (kill(-1)), so
they are never run here as they are: each run gets a PID namespace of its own (unshare, as root),
an unprivileged uid, and docker-init (tini) as PID 1, as in a Docker sandbox. se-run is compiled
from images/runtime/se-run.c with the flags of its image, once per test session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "images" / "runtime" / "se-run.c"
CFLAGS = ("-O2", "-static", "-Wall", "-Wextra", "-Werror")
# The images' own user: alone in its PID namespace, whatever else on the host runs as it.
UID = 10001
TOOLS = ("gcc", "unshare", "setpriv", "docker-init")


@dataclass(frozen=True)
class HostBox:
    se_run: str
    workdir: Path

    def command(self, argv: Sequence[str]) -> list[str]:
        """argv as the sandbox's command: PID 2 of a fresh namespace, as UID, under tini -g."""
        box = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]
        user = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups"]
        return [*box, *user, "--", "docker-init", "-g", "--", *argv]

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a sandbox (launch.environment's names), with no nonce."""
        return {
            "PATH": "/usr/bin:/bin",
            "SANDBOX_SOURCE": str(self.workdir / "main"),
            "TINI_KILL_PROCESS_GROUP": "1",
            **extra,
        }

    def run(self, argv: Sequence[str], stdin: bytes = b"", timeout: float = 20, **env: str):
        return subprocess.run(
            self.command(argv),
            input=stdin,
            capture_output=True,
            cwd=self.workdir,
            env=self.env(**env),
            timeout=timeout,
        )

    def popen(self, argv: Sequence[str], **env: str) -> subprocess.Popen:
        return subprocess.Popen(
            self.command(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.workdir,
            env=self.env(**env),
        )


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "a PID namespace of its own needs root"
    lacking = [tool for tool in TOOLS if shutil.which(tool) is None]
    return f"missing {', '.join(lacking)} (scripts/setup.sh test installs them)" if lacking else None


@pytest.fixture(scope="session")
def se_run_binary() -> Iterator[str]:
    """se-run, built on the host as its image builds it."""
    missing = _missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"se-run cannot be tested here: {missing}")
        pytest.skip(f"se-run cannot be tested here: {missing}")
    folder = tempfile.mkdtemp(prefix="se-run-")
    try:
        os.chmod(folder, 0o755)
        binary = os.path.join(folder, "se-run")
        subprocess.run(["gcc", *CFLAGS, str(SOURCE), "-o", binary], check=True, capture_output=True)
        yield binary
    finally:
        shutil.rmtree(folder)


@pytest.fixture
def hostbox(se_run_binary) -> Iterator[HostBox]:
    """A box with its own working directory, owned by its uid, as /workspace is."""
    workdir = Path(tempfile.mkdtemp(prefix="se-box-"))
    try:
        os.chown(workdir, UID, UID)
        yield HostBox(se_run_binary, workdir)
    finally:
        shutil.rmtree(workdir)
