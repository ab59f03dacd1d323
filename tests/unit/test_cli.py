"""The `sandbox-engine` command's refusals, before it hands over to gunicorn."""

from __future__ import annotations

import os

import pytest

from sandbox_engine import cli
from sandbox_engine.config import ENV_PREFIX


@pytest.fixture(autouse=True)
def no_settings_from_the_environment(monkeypatch):
    for name in os.environ:
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


def test_serve_refuses_a_uid_range_that_cannot_hold_the_sessions(capsys):
    assert cli.main(["serve", "--uid-range", "300000-300009", "--max-sessions", "64"]) == 2
    assert "holds 10 uids; max_sessions and the pool need 64" in capsys.readouterr().err


def test_serve_refuses_a_uid_directory_it_cannot_make(tmp_path, capsys):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    assert cli.main(["serve", "--uid-dir", str(blocked / "uids")]) == 2
    assert "the uid leases' directory (--uid-dir)" in capsys.readouterr().err
