"""Configuration: defaults, SANDBOX_ENGINE_* variables, keyword overrides, sizes and validation."""

from __future__ import annotations

import dataclasses
import os

import pytest

from sandbox_engine.cli import LIMIT_FLAGS
from sandbox_engine.config import Config, parse_size

DEFAULTS = {
    "idle_timeout": 30.0,
    "run_timeout": 300.0,
    "output_limit": 1048576,
    "memory": 268435456,
    "cpus": 0.5,
    "pids": 32,
    "disk": 67108864,
    "max_sessions": 64,
    "max_code_size": 262144,
    "record_ttl": 3600.0,
    "max_records": 10000,
}


def test_defaults_match_the_documented_limits():
    config = Config.from_env({})
    assert {name: getattr(config, name) for name in DEFAULTS} == DEFAULTS
    assert config.uids == range(200000, 265536)
    assert config.uid_dir == "/var/lib/sandbox-engine/uids"
    assert config.instance == "default"
    assert config.docker_host is None
    assert config.allowed_origins == ()
    assert config.runtime == "runc"


def test_the_class_defaults_are_the_same_as_from_an_empty_environment():
    assert Config() == Config.from_env({})


def test_environment_variables_override_the_defaults():
    config = Config.from_env(
        {
            "SANDBOX_ENGINE_IDLE_TIMEOUT": "5",
            "SANDBOX_ENGINE_RUN_TIMEOUT": "60.5",
            "SANDBOX_ENGINE_OUTPUT_LIMIT": "64k",
            "SANDBOX_ENGINE_MEMORY": "512m",
            "SANDBOX_ENGINE_CPUS": "1.5",
            "SANDBOX_ENGINE_PIDS": "100",
            "SANDBOX_ENGINE_DISK": "1g",
            "SANDBOX_ENGINE_MAX_SESSIONS": "8",
            "SANDBOX_ENGINE_MAX_CODE_SIZE": "1000",
            "SANDBOX_ENGINE_INSTANCE": "blue",
            "SANDBOX_ENGINE_STATE_DIR": "/srv/state",
            "SANDBOX_ENGINE_DOCKER_HOST": "tcp://docker:2375",
            "SANDBOX_ENGINE_ALLOWED_ORIGINS": "https://a.example, https://b.example,",
            "SANDBOX_ENGINE_RUNTIME": "runsc",
        }
    )
    assert config.idle_timeout == 5.0
    assert config.run_timeout == 60.5
    assert config.output_limit == 65536
    assert config.memory == 512 * 1024**2
    assert config.cpus == 1.5
    assert config.pids == 100
    assert config.disk == 1024**3
    assert config.max_sessions == 8
    assert config.max_code_size == 1000
    assert config.instance == "blue"
    assert config.state_dir == "/srv/state"
    assert config.docker_host == "tcp://docker:2375"
    assert config.allowed_origins == ("https://a.example", "https://b.example")
    assert config.runtime == "runsc"


def test_the_process_environment_is_read_by_default(monkeypatch):
    monkeypatch.setenv("SANDBOX_ENGINE_PIDS", "7")
    assert Config.from_env().pids == 7


def test_empty_variables_are_ignored():
    assert Config.from_env({"SANDBOX_ENGINE_IDLE_TIMEOUT": ""}).idle_timeout == 30.0


def test_docker_host_falls_back_to_docker_own_variable():
    assert Config.from_env({"DOCKER_HOST": "unix:///run/d.sock"}).docker_host == "unix:///run/d.sock"
    both = {"DOCKER_HOST": "unix:///run/d.sock", "SANDBOX_ENGINE_DOCKER_HOST": "tcp://x:2375"}
    assert Config.from_env(both).docker_host == "tcp://x:2375"


def test_keyword_overrides_beat_the_environment():
    environ = {"SANDBOX_ENGINE_IDLE_TIMEOUT": "5", "SANDBOX_ENGINE_MEMORY": "1g"}
    config = Config.from_env(environ, idle_timeout="7", memory="128m", pids=9)
    assert config.idle_timeout == 7.0
    assert config.memory == 128 * 1024**2
    assert config.pids == 9


def test_a_keyword_left_unset_keeps_the_environment_value():
    # The command line passes None for every flag not given.
    config = Config.from_env({"SANDBOX_ENGINE_IDLE_TIMEOUT": "5"}, idle_timeout=None)
    assert config.idle_timeout == 5.0


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("256m", 268435456),
        ("64k", 65536),
        ("1g", 1073741824),
        ("2G", 2 * 1024**3),
        ("64MB", 64 * 1024**2),
        ("1.5k", 1536),
        ("1000", 1000),
        (" 12 ", 12),
        ("10b", 10),
        (4096, 4096),
    ],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1", "1t", "m", "1 mb extra", "0x10"])
def test_parse_size_refuses_what_is_not_a_size(text):
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IDLE_TIMEOUT", "soon"),
        ("IDLE_TIMEOUT", "0"),
        ("RUN_TIMEOUT", "-1"),
        ("OUTPUT_LIMIT", "0"),
        ("MEMORY", "lots"),
        ("MEMORY", "0m"),
        ("CPUS", "0"),
        ("CPUS", "half"),
        ("PIDS", "1.5"),
        ("PIDS", "0"),
        ("DISK", "-64m"),
        ("MAX_SESSIONS", "0"),
        ("MAX_SESSIONS", "many"),
        ("MAX_CODE_SIZE", "0"),
        ("MAX_RECORDS", "0"),
        ("MAX_RECORDS", "-5"),
        ("MAX_RECORDS", "1e4"),
        ("RECORD_TTL", "0"),
        ("RECORD_TTL", "-1"),
        ("RUNTIME", "run sc"),
        ("RUNTIME", "../runsc"),
        ("LOG_FORMAT", "xml"),
    ],
)
def test_invalid_environment_values_raise_value_error(name, value):
    with pytest.raises(ValueError):
        Config.from_env({f"SANDBOX_ENGINE_{name}": value})


@pytest.mark.parametrize(("name", "value"), [("cpus", 0), ("max_sessions", -1), ("idle_timeout", "0")])
def test_invalid_keyword_values_raise_value_error(name, value):
    with pytest.raises(ValueError, match=name):
        Config.from_env({}, **{name: value})


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_timeouts_that_are_not_finite_are_refused(value):
    with pytest.raises(ValueError):
        Config.from_env({"SANDBOX_ENGINE_IDLE_TIMEOUT": value, "SANDBOX_ENGINE_RUN_TIMEOUT": value})


def test_to_env_round_trips_through_from_env():
    config = Config(
        idle_timeout=12.5,
        run_timeout=90.0,
        output_limit=4096,
        memory=parse_size("128m"),
        cpus=1.25,
        pids=16,
        disk=parse_size("16m"),
        max_sessions=3,
        max_code_size=2048,
        instance="green",
        state_dir="/tmp/state",
        record_ttl=60.0,
        max_records=50,
        docker_host="tcp://docker:2375",
        uid_range="300000-300099",
        uid_dir="/srv/uids",
        allowed_origins=("https://a.example", "https://b.example"),
        runtime="runsc",
        log_format="json",
    )
    env = config.to_env()
    assert all(name.startswith("SANDBOX_ENGINE_") and isinstance(v, str) for name, v in env.items())
    assert Config.from_env(env) == config


def test_defaults_round_trip_and_unset_values_are_left_out():
    env = Config().to_env()
    assert "SANDBOX_ENGINE_DOCKER_HOST" not in env
    assert Config.from_env(env) == Config()
    assert len(env) == len(dataclasses.fields(Config)) - 1


def test_serve_has_a_flag_for_each_record_bound():
    flags = {flag: name for flag, name, _ in LIMIT_FLAGS}
    assert flags["--max-records"] == "max_records" and flags["--record-ttl"] == "record_ttl"
    config = Config.from_env({}, max_records="25", record_ttl="90")
    assert (config.max_records, config.record_ttl) == (25, 90.0)


def test_the_uid_range_is_read_as_numbers():
    config = Config.from_env({"SANDBOX_ENGINE_UID_RANGE": "300000-300063"})
    assert config.uids == range(300000, 300064)


@pytest.mark.parametrize(
    ("uid_range", "why"),
    [
        ("300000", "FIRST-LAST"),
        ("a-b", "FIRST-LAST"),
        ("-5-10", "FIRST-LAST"),
        ("0-100", "from 1"),
        ("300-200", "the first not above the last"),
        ("1-4294967295", "4294967294"),
        ("5000-20000", "images' own user"),
    ],
)
def test_a_uid_range_that_is_no_range_of_ours_is_refused(uid_range, why):
    with pytest.raises(ValueError, match=why):
        Config.from_env({}, uid_range=uid_range)


def test_the_uid_range_must_hold_every_session_and_the_pool():
    Config.from_env({}, uid_range="300000-300063", max_sessions=64)
    with pytest.raises(ValueError, match="holds 64 uids; max_sessions and the pool need 66"):
        Config.from_env({}, uid_range="300000-300063", max_sessions=64, pool_size="python=2")


def test_the_compile_stage_gets_two_cpus_or_the_hosts_if_fewer(monkeypatch):
    # As a plain `docker run` of the compiler has (go and javac use more than one); Docker
    # refuses more CPUs than the host has.
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert Config().compile_cpus == 1.0
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert Config().compile_cpus == 2.0
