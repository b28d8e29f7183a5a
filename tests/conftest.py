"""Shared fixtures: short state dirs (ipc paths must stay under ~100 bytes), a config file,
a private tmux server. Use tests.helpers.wait_for to poll with a deadline (never sleep)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.fleet import LocalFleet
from tests.helpers import HYPOTHESIS_PROFILE, kill_tmux_server

# The user's cache directory stays the user's: what the suite's processes cache (the parsed
# config, luzia/configcache.py) goes to a directory of this test process's own, inherited
# by every process it starts. A test may still point XDG_CACHE_HOME elsewhere.
_CACHE = tempfile.mkdtemp(prefix="lzcache")
os.environ["XDG_CACHE_HOME"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, True)

# deadline and too_slow are about time: on a loaded box they fail a test whose answers are
# right. How many examples each test tries: tests.helpers.examples.
for _name in ("quick", "thorough"):
    settings.register_profile(_name, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                              print_blob=True)
settings.load_profile(HYPOTHESIS_PROFILE)


def pytest_xdist_auto_num_workers(config):
    """What `-n auto` (pyproject's addopts) means: two workers a core, as most tests wait on
    real processes rather than compute. PYTEST_XDIST_AUTO_NUM_WORKERS=N or `-n N` overrides;
    `-n 0` runs in one process (for -s, --pdb)."""
    return min(8, 2 * len(os.sched_getaffinity(0)))


def pytest_collection_modifyitems(config, items):
    """Tests marked `long` start at once, spread over the parallel workers. Under xdist's
    `--dist worksteal` (pyproject's addopts) each worker first gets a contiguous share of
    this list and the others steal from its end: so each share begins with its part of the
    long tests (round robin), instead of all of them lining up at the head of the first
    share and running one after another there. The rest keep their order (module fixtures
    stay shared). Without workers (`-n 0`): the long tests first."""
    workers = getattr(config, "workerinput", {}).get("workercount", 1)
    items[:] = _long_first(items, workers)
    if HYPOTHESIS_PROFILE == "thorough":    # ten times the examples: more than 60 s may be fair
        for item in items:
            if getattr(getattr(item, "obj", None), "is_hypothesis_test", False):
                item.add_marker(pytest.mark.timeout(600))


def _long_first(items: list, workers: int) -> list:
    long = [item for item in items if item.get_closest_marker("long") is not None]
    rest = [item for item in items if item.get_closest_marker("long") is None]
    out: list = []
    left = len(items)
    for n in range(workers):          # the shares worksteal hands out: left // workers left
        share = left // (workers - n)
        left -= share
        mine = long[n::workers]
        take = max(0, share - len(mine)) if n < workers - 1 else len(rest)
        out += mine + rest[:take]
        rest = rest[take:]
    return out


@pytest.fixture
def short_tmp():
    """A temp dir with a short path, for ipc:// sockets (tmp_path is too long)."""
    path = Path(tempfile.mkdtemp(prefix="lz", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def tmux_socket():
    """A private tmux server name (tmux -L); killed at the end."""
    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed")
    name = f"lzt{uuid.uuid4().hex[:8]}"
    yield name
    kill_tmux_server(name)


def write_config(home: Path, text: str = "", tmux_socket: str = "") -> Path:
    """Write a luzia.toml under `home` with test-friendly defaults plus `text`."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "luzia.toml"
    base = f'home = "{home}"\n'
    extra = f'[agent]\ntmux_socket = "{tmux_socket}"\n' if tmux_socket and "[agent]" not in text else ""
    path.write_text(base + text + ("\n" + extra if extra else ""))
    return path


@pytest.fixture
def luzia_env(short_tmp, monkeypatch):
    """Point every component at a private LUZIA_HOME with a config file; returns (home, cfg path)."""
    home = short_tmp / "h"
    path = write_config(home)
    for name in list(os.environ):
        if name.startswith("LUZIA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LUZIA_CONFIG", str(path))
    monkeypatch.setenv("LUZIA_HOME", str(home))
    return home, path


@pytest.fixture
def make_fleet(short_tmp, request):
    fleets: list[LocalFleet] = []

    def make(config: str = "", tmux_socket: str = "", **env: str) -> LocalFleet:
        fleet = LocalFleet(short_tmp / f"f{len(fleets)}", config, tmux_socket, env)
        fleets.append(fleet)
        return fleet
    yield make
    for fleet in fleets:
        fleet.close()
