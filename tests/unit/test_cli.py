"""The `sandbox-engine` command's refusals, before it hands over to gunicorn."""

from __future__ import annotations

import json
import os

import pytest

from sandbox_engine import cli
from sandbox_engine.config import ENV_PREFIX, Config
from sandbox_engine.keys import KeyStore


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


def keys(tmp_path, *args: str) -> list[str]:
    return ["keys", *args, "--state-dir", str(tmp_path / "state"), "--instance", "blue"]


def test_keys_create_prints_the_secret_once_list_never_shows_it_revoke_removes_it(tmp_path, capsys):
    assert cli.main(keys(tmp_path, "create", "alice", "--max-sessions", "3", "--rate", "60")) == 0
    out, err = capsys.readouterr()
    secret = out.strip()
    assert secret.startswith("se_") and len(secret) == 46 and out == secret + "\n"
    assert "shown only this once" in err
    assert cli.main(keys(tmp_path, "create", "ops", "--scopes", "admin")) == 0
    capsys.readouterr()
    store = KeyStore.for_config(Config(state_dir=str(tmp_path / "state"), instance="blue"))
    assert store.find(secret).name == "alice"

    assert cli.main(keys(tmp_path, "list")) == 0
    table = capsys.readouterr().out
    assert secret not in table and secret[3:] not in table
    lines = table.splitlines()
    assert lines[0].split() == ["NAME", "SCOPES", "MAX-SESSIONS", "RATE/MIN", "CREATED", "LAST", "USED"]
    assert lines[1].split()[:4] == ["alice", "run,session", "3", "60"] and lines[1].endswith("never")
    assert lines[2].split()[:4] == ["ops", "admin", "-", "-"]
    assert cli.main(keys(tmp_path, "list", "--json")) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [k["name"] for k in listed] == ["alice", "ops"] and secret not in json.dumps(listed)

    assert cli.main(keys(tmp_path, "revoke", "alice")) == 0
    assert "revoked" in capsys.readouterr().err
    store.reload()
    assert store.find(secret) is None
    assert cli.main(keys(tmp_path, "revoke", "alice")) == 1
    assert "no key named 'alice'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["create", "bad name"], "key name 'bad name'"),
        (["create", "k", "--scopes", "session,root"], "choose among session, run, admin"),
        (["create", "k", "--max-sessions", "0"], "--max-sessions must be a positive number"),
        (["create", "k", "--rate", "-5"], "--rate must be a positive number"),
    ],
)
def test_keys_create_refuses_what_it_cannot_make(tmp_path, capsys, args, says):
    assert cli.main(keys(tmp_path, *args)) == 1
    assert says in capsys.readouterr().err


def test_keys_use_the_state_directory_and_instance_from_the_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SANDBOX_ENGINE_STATE_DIR", str(tmp_path / "env-state"))
    monkeypatch.setenv("SANDBOX_ENGINE_KEYS_FILE", str(tmp_path / "keys.json"))
    assert cli.main(["keys", "create", "alice"]) == 0
    assert os.path.exists(tmp_path / "keys.json")
    assert os.path.exists(tmp_path / "env-state" / "default" / "keys" / "secret")


def test_the_server_warns_once_at_start_when_it_is_open(tmp_path, monkeypatch):
    from sandbox_engine.gunicorn_conf import warn_if_open

    monkeypatch.setenv("SANDBOX_ENGINE_STATE_DIR", str(tmp_path / "state"))
    warnings: list[str] = []

    class Log:
        def warning(self, message, *args):
            warnings.append(message % args)

    warn_if_open(Log())
    assert len(warnings) == 1 and "no API key exists: anyone who reaches this server runs code" in warnings[0]
    monkeypatch.setenv("SANDBOX_ENGINE_AUTH", "required")
    warn_if_open(Log())
    monkeypatch.delenv("SANDBOX_ENGINE_AUTH")
    assert cli.main(["keys", "create", "alice"]) == 0
    warn_if_open(Log())
    assert len(warnings) == 1
