"""LUZIA_CACHE_TTL (luzia/cache.py): shells repeating a view's query within the TTL cost
the broker one query between them; a change made from this host is seen at once; 0 is off."""

from __future__ import annotations

import subprocess

from tests.cli.conftest import PY
from tests.cli.fakebroker import make_job
from tests.helpers import wait_for

A = "130000-aaaaaaaaaaaa"


def test_repeated_views_within_the_ttl_ask_the_broker_once(home, fake):
    fake.add(make_job(A))
    for _ in range(4):
        out = home.cli("jobs", LUZIA_CACHE_TTL="60")
        assert out.returncode == 0 and A in out.stdout.decode()
    assert len(fake.ops("jobs.list")) == 1
    home.cli("jobs", "--state", "pending", LUZIA_CACHE_TTL="60")   # another query: its own entry
    assert len(fake.ops("jobs.list")) == 2
    home.cli("jobs", LUZIA_CACHE_TTL="0")                          # off: always asked
    assert len(fake.ops("jobs.list")) == 3


def test_shells_polling_at_once_cost_one_query(home, fake):
    """Eight `luzia jobs ID` started together: one asks, the others wait for its answer."""
    fake.add(make_job(A))
    env = {**home.env, "LUZIA_CACHE_TTL": "60"}
    procs = [subprocess.Popen([PY, "-m", "luzia.cli", "jobs", A, "--json"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(8)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert len({o[0] for o in outs}) == 1
    assert len(fake.ops("jobs.get")) == 1


def test_a_change_made_here_is_seen_at_once(home, fake):
    fake.add(make_job(A))
    assert b'"state": "pending"' in home.cli("jobs", A, "--json", LUZIA_CACHE_TTL="60").stdout
    assert home.cli("cancel", A, LUZIA_CACHE_TTL="60").returncode == 0
    assert b'"state": "killed"' in home.cli("jobs", A, "--json", LUZIA_CACHE_TTL="60").stdout
    assert len(fake.ops("jobs.get")) == 2
    home.cli("cancel", A, "--dry-run", LUZIA_CACHE_TTL="60")      # a dry run changes nothing
    home.cli("jobs", A, "--json", LUZIA_CACHE_TTL="60")
    assert len(fake.ops("jobs.get")) == 2
    assert A in home.cli("jobs", "--json", LUZIA_CACHE_TTL="60").stdout.decode()
    new = home.submit("demo", "a new job")                         # nor does a submission
    wait_for(lambda: new in fake.jobs, 10, message="the fake broker has the new job")
    assert new in home.cli("jobs", "--json", LUZIA_CACHE_TTL="60").stdout.decode()
    assert len(fake.ops("jobs.list")) == 2
    assert (home.path / "cache").stat().st_mode & 0o777 == 0o700
