"""luzia.configcache: the config's TOML parsed once per change of its text, never stale."""

from __future__ import annotations

import json
import tomllib

import pytest

from luzia import config, configcache
from luzia.errors import ConfigError


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "luzia" / configcache.STORE


TEXT = 'home = "/srv/h"\nmax_jobs = 7\n[projects.demo]\nuser = "alice"\ntimeout = 1.5\n'


def test_the_table_is_tomllibs_and_is_kept_for_the_same_text(tmp_path, store):
    path = tmp_path / "luzia.toml"
    path.write_text(TEXT)
    assert configcache.read_toml(path) == tomllib.loads(TEXT)
    assert store.stat().st_mode & 0o777 == 0o600
    kept = json.loads(store.read_text())
    assert kept == {"text": TEXT, "toml": tomllib.loads(TEXT)}
    kept["toml"]["max_jobs"] = 8                # what is kept is what is used
    store.write_text(json.dumps(kept))
    assert configcache.read_toml(path)["max_jobs"] == 8


def test_a_new_text_is_parsed_again_however_quickly_it_was_written(tmp_path, store):
    path = tmp_path / "luzia.toml"
    for jobs in range(10, 20):                  # same size, within one clock tick
        path.write_text(f"max_jobs = {jobs}\n")
        assert configcache.read_toml(path) == {"max_jobs": jobs}
        assert config.load(env={"LUZIA_CONFIG": str(path)}).max_jobs == jobs


@pytest.mark.parametrize("text", ["when = 1979-05-27T07:32:00Z\n", "x = nan\n"])
def test_what_json_cannot_hold_as_it_is_is_never_kept(tmp_path, store, text):
    path = tmp_path / "luzia.toml"
    path.write_text(text)
    assert repr(configcache.read_toml(path)) == repr(tomllib.loads(text))
    assert not store.exists()


def test_a_bad_file_is_still_the_same_clear_error(tmp_path, store):
    path = tmp_path / "luzia.toml"
    path.write_text(TEXT)
    config.load(env={"LUZIA_CONFIG": str(path)})
    path.write_text("this is not toml")
    with pytest.raises(ConfigError, match="cannot read config .*luzia.toml: Expected '='"):
        config.load(env={"LUZIA_CONFIG": str(path)})
    path.write_bytes(b"x = '\xff'\n")
    with pytest.raises(ConfigError, match="cannot read config .*codec can't decode"):
        config.load(env={"LUZIA_CONFIG": str(path)})


def test_a_cache_that_cannot_be_used_is_no_error(tmp_path, monkeypatch):
    path = tmp_path / "luzia.toml"
    path.write_text(TEXT)
    (tmp_path / "file").write_text("")
    for where in (str(tmp_path / "file"), "relative/dir"):
        monkeypatch.setenv("XDG_CACHE_HOME", where)
        assert configcache.read_toml(path) == tomllib.loads(TEXT)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    store = tmp_path / "c" / "luzia" / configcache.STORE
    store.parent.mkdir(parents=True)
    store.write_text("{not json")
    assert configcache.read_toml(path) == tomllib.loads(TEXT)
    assert json.loads(store.read_text())["text"] == TEXT     # mended
