"""luzia.config: layering, typing, clear errors."""

from __future__ import annotations

import pytest

from luzia import config
from luzia.errors import ConfigError, UsageError


def load(tmp_path, text="", **env):
    path = tmp_path / "luzia.toml"
    path.write_text(text)
    return config.load(env={"LUZIA_CONFIG": str(path), "LUZIA_HOME": str(tmp_path / "h"), **env})


def test_defaults_make_a_fleet_of_one(tmp_path):
    cfg = load(tmp_path)
    assert cfg.home == str(tmp_path / "h")
    assert cfg.endpoints.submit == f"ipc://{tmp_path}/h/run/submit"
    assert "demo" in cfg.projects and cfg.projects["demo"].user
    assert cfg.agent.command[-1] == "{task}"
    assert cfg.max_jobs == 1000 and cfg.cache_ttl == 1.0 and cfg.monitor_interval == 1.0
    assert cfg.source.endswith("luzia.toml")


def test_env_beats_file_and_flags_beat_env(tmp_path):
    text = "max_jobs = 10\n[agent]\nslots = 3\n"
    assert load(tmp_path, text).agent.slots == 3
    cfg = load(tmp_path, text, LUZIA_AGENT_SLOTS="5", LUZIA_MAX_JOBS="20",
               LUZIA_JOBS_DIR="/tmp/jobs", LUZIA_MONITOR_INTERVAL="0.5", LUZIA_CACHE_TTL="2")
    assert (cfg.agent.slots, cfg.max_jobs, cfg.jobs_dir) == (5, 20, "/tmp/jobs")
    assert (cfg.monitor_interval, cfg.cache_ttl) == (0.5, 2.0)
    path = tmp_path / "luzia.toml"
    cfg = config.load(overrides={"agent": {"slots": 7}},
                      env={"LUZIA_CONFIG": str(path), "LUZIA_AGENT_SLOTS": "5"})
    assert cfg.agent.slots == 7


def test_lists_and_booleans_from_env(tmp_path):
    cfg = load(tmp_path, LUZIA_AGENT_CAPABILITIES="code, text", LUZIA_SCHEDULER_PER_USER="no")
    assert cfg.agent.capabilities == ["code", "text"] and cfg.scheduler.per_user is False


@pytest.mark.parametrize("text, env, message", [
    ("[agent]\nslotz = 2\n", {}, "unknown config key 'agent.slotz'"),
    ("[agent]\nslots = 'two'\n", {}, "agent.slots: expected a number"),
    ("[agent]\nslots = -1\n", {}, "must not be negative"),
    ("[agent]\nslots = 0\n", {}, "at least 1"),
    ("", {"LUZIA_AGENT_SLOTS": "many"}, "expected a number"),
    ("[projects.x]\npriority = 'urgent'\n", {}, "priority must be one of"),
    ("[endpoints]\nsubmit = 'http://x'\n", {}, "not an ipc:// or tcp://"),
    ("this is not toml", {}, "cannot read config"),
    ("[agent]\ntmux_socket = 'a b; rm -rf ~'\n", {}, "a tmux server name is"),
])
def test_bad_config_is_one_clear_error(tmp_path, text, env, message):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, text, **env)


def test_missing_config_named_by_env_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(env={"LUZIA_CONFIG": str(tmp_path / "nope.toml")})


def test_ipc_paths_that_are_too_long_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="longer than"):
        load(tmp_path, LUZIA_HOME="/tmp/" + "x" * 120)


def test_unknown_project_lists_the_known_ones(tmp_path):
    cfg = load(tmp_path, "[projects.overbits]\nuser = 'ob'\n[projects.musica]\n")
    with pytest.raises(UsageError, match="known projects: musica, overbits"):
        cfg.project("nope")
    assert "demo" not in cfg.projects


def test_local_endpoints():
    assert config.is_local("ipc:///tmp/x")
    assert config.is_local("tcp://127.0.0.1:5555") and config.is_local("tcp://localhost:1")
    assert not config.is_local("tcp://0.0.0.0:5555") and not config.is_local("tcp://10.0.0.2:1")
