"""Upgrading over a real database: every tests/fixtures/luzia-schemaN.db (written by a real
fleet of an earlier release: tests/fixtures/README.md) opened by this release's real broker,
then worked on by a real agent, through the real CLI. And a database from a newer release,
refused without being touched."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess

import pytest

from luzia.broker import migrations
from luzia.identity import operator
from tests.dbfixtures import (
    CRITICAL,
    DEPENDS,
    SCHEMA1,
    STATES,
    WITH_METADATA,
    copy_fixture,
    recorded,
    submitter_of,
)
from tests.fleet import PY, LocalFleet, fleet_config, jobs_json
from tests.helpers import wait_for


def version_of(fixture) -> int:
    return int(fixture.stem.removeprefix("luzia-schema"))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("fixture", recorded(), ids=lambda p: p.name)
def test_the_new_broker_takes_over_a_recorded_database_and_its_work(short_tmp, fixture):
    home = short_tmp / "f"
    copy_fixture(fixture, home / "luzia.db")
    fleet = LocalFleet(home, fleet_config('runner = "subprocess"'))
    try:
        fleet.start_broker()
        old = version_of(fixture)
        if old < migrations.LATEST:
            assert f"migrated luzia.db from schema {old} to {migrations.LATEST}" in fleet.output("broker")
            [copy] = home.glob(f"luzia.db.schema{old}-*.bak")
            kept = sqlite3.connect(copy)
            assert dict(kept.execute("SELECT task, state FROM jobs")) == STATES
            kept.close()

        listed = jobs_json(fleet.cli("jobs", "--json"))
        by_task = {j["task"]: j for j in listed}
        assert {task: j["state"] for task, j in by_task.items()} == STATES
        alice = jobs_json(fleet.cli("jobs", by_task[WITH_METADATA]["id"], "--json"))
        assert (alice["user"], alice["metadata"]) == ("alice", {"k": "v"})
        # new in schema 2: empty for older jobs, what the recording release kept for its own
        assert "submitter" in alice and alice["submitter"] == submitter_of(fixture, WITH_METADATA)
        assert all("submitter" in j for j in listed)
        # new in schema 4: no cost known, no tokens, never paused
        assert (alice["cost_usd"], alice["tokens_in"], alice["pauses"]) == (None, 0, 0)
        assert fleet.control("budget") == {"budgets": [], "accounts": [], "paused": []}

        # the drain was kept: the critical job waits while "vm" is live and has a free slot
        critical, depends = by_task[CRITICAL]["id"], by_task[DEPENDS]["id"]
        fleet.start_agent("vm")
        wait_for(lambda: fleet.live_agents() == {"vm"}, 30, message="agent vm live")
        vm = next(a for a in jobs_json(fleet.cli("agents", "status", "--json")) if a["name"] == "vm")
        assert vm["health"] == "draining"
        waiting = fleet.job(critical)
        assert waiting and waiting["state"] == "pending" and "draining" in waiting["why"]

        assert fleet.cli("agents", "undrain", "vm").returncode == 0
        wait_for(lambda: fleet.state(depends) == "completed", 60, message="the pair ran")
        first, second = fleet.job(critical), fleet.job(depends)
        assert first and second and first["state"] == "completed" and first["host"] == second["host"] == "vm"
        assert second["started_at"] >= first["finished_at"]            # in order: --after

        fresh = fleet.submit("demo", "after the upgrade")
        wait_for(lambda: fleet.state(fresh) == "completed", 30)
        # a new job records who sent it
        assert jobs_json(fleet.cli("jobs", fresh, "--json"))["submitter"] == operator()
        history = jobs_json(fleet.cli("history", "--json", "--limit", "50"))
        assert len(history) == 6 and all("submitter" in j for j in history)
    finally:
        fleet.close()


def test_a_database_from_a_newer_release_is_refused_in_one_line_and_left_as_it_was(short_tmp):
    home = short_tmp / "f"
    path = copy_fixture(SCHEMA1, home / "luzia.db")
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {migrations.LATEST + 1}")
    db.execute("PRAGMA journal_mode=DELETE")
    db.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    fleet = LocalFleet(home)
    try:
        out = subprocess.run([PY, "-m", "luzia.broker"], env=fleet.env, capture_output=True,
                             timeout=60)
    finally:
        fleet.close()
    err = out.stderr.decode()
    assert out.returncode == 73 and err.count("\n") == 1, err
    assert str(path) in err and f"schema {migrations.LATEST + 1}" in err and "newer" in err
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in home.glob("luzia.db*")) == ["luzia.db"]
