"""Fixtures for the CLI tests: a home with a config, a fake broker on its endpoints, and
`luzia` run as a user runs it (a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from luzia.config import Config, load
from tests.cli.fakebroker import FakeBroker
from tests.conftest import write_config
from tests.helpers import printed_id

PY = sys.executable

PROJECTS = """
timeout = 600
max_retries = 1
[agent]
name = "here"
[projects.demo]
user = "alice"
[projects.overbits]
user = "overbits"
priority = "high"
type = "code"
timeout = 120
max_retries = 3
workdir = "/srv/overbits"
"""


@dataclass
class Home:
    """A LUZIA_HOME with its config, and `luzia ARGS` run against it."""

    path: Path
    config: Path
    env: dict[str, str]

    @property
    def cfg(self) -> Config:
        return load(env=self.env)

    def cli(self, *args: str, timeout: float = 20, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([PY, "-m", "luzia.cli", *args], env={**self.env, **env},
                              capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def submit(self, *args: str) -> str:
        """`luzia PROJECT TASK ...`; the job id it printed."""
        return printed_id(self.cli(*args))


def make_home(root: Path, text: str = PROJECTS) -> Home:
    path = root / "h"
    config = write_config(path, text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUZIA_") and k != "NO_COLOR"}
    # no answer cache: the fake's jobs change under the CLI (tests/cli/test_cache.py turns it on)
    env.update(LUZIA_CONFIG=str(config), LUZIA_HOME=str(path), LUZIA_CONTROL_TIMEOUT="2",
               LUZIA_CACHE_TTL="0")
    return Home(path, config, env)


@pytest.fixture
def home(short_tmp) -> Home:
    """A home with a config and no broker."""
    return make_home(short_tmp)


@pytest.fixture
def fake(home):
    """A fake broker serving `home`'s endpoints."""
    broker = FakeBroker(home.cfg)
    yield broker
    broker.close()
