"""Fixtures for supervisor tests: a config with small timings, and in-process arbiters over
stand-in children that are always shut down and closed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from luzia import config
from luzia.supervisor.arbiter import Arbiter
from luzia.supervisor.notify import Notifier
from tests.helpers import wait_for

# Small delays, so restarts and cool-downs happen within a test. The liveness window is the
# production one (ping_timeout 15 s): a child that answers its pings must not count as hung
# because this loaded box took a second to start Python and zmq. The tests of hang detection
# set a small ping_timeout (HANG_TEST) for children that really never answer.
SMALL = {
    "backoff_initial": 0.1, "backoff_max": 0.2, "flap_deaths": 3, "flap_window": 30,
    "fatal_cooldown": 0.5, "ping_interval": 0.1, "ping_timeout": 15, "start_grace": 0.3,
    "stop_timeout": 2, "log_max_bytes": 2000, "log_backups": 2,
}
HANG_TEST = {"ping_timeout": 0.6}


def make_cfg(home: Path, **supervisor) -> config.Config:
    """A config file under `home` with the SMALL supervisor timings (overridable)."""
    home.mkdir(parents=True, exist_ok=True)
    settings = {**SMALL, **supervisor}
    body = "\n".join(f"{k} = {str(v).lower() if isinstance(v, bool) else v}" for k, v in settings.items())
    (home / "luzia.toml").write_text(f'home = "{home}"\n[supervisor]\n{body}\n')
    return config.load(env={"LUZIA_CONFIG": str(home / "luzia.toml")})


def until(arbiter: Arbiter, predicate, timeout: float = 30):
    """Turn the arbiter's loop until `predicate()` holds."""
    def turned() -> bool:
        arbiter.turn(0.01)
        return predicate()
    return wait_for(turned, timeout)


@pytest.fixture
def arbiter(short_tmp):
    """build(programs, notifier=None, **supervisor settings) -> a started Arbiter."""
    made = []

    def build(programs, notifier=None, **settings):
        a = Arbiter(make_cfg(short_tmp / "h", **settings), programs=programs,
                    notifier=notifier or Notifier("", ""))
        made.append(a)
        a.start()
        return a
    yield build
    for a in made:
        if not a.done:
            a.shutdown(time.monotonic())
            until(a, lambda a=a: a.done)
        a.close()
