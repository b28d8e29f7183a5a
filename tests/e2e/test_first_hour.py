"""The first hour with a real fleet (issue 18): waiting for a job from Python, what an
attempt count says after retries, the user locks, per-agent accounting, a retired agent
forgotten, and the hints when only the broker is stopped under a running supervisor."""

from __future__ import annotations

import json
import signal

import pytest

from luzia import client
from luzia.config import load
from luzia.errors import NotFound, WaitTimeout
from tests.fleet import PY, SLEEPER, LocalFleet, fleet_config, jobs_json
from tests.helpers import wait_for


@pytest.fixture
def fleet(short_tmp):
    fleets: list[LocalFleet] = []

    def make(agent: str = 'runner = "subprocess"', scheduler: str = "per_user = false",
             extra: str = "") -> LocalFleet:
        f = LocalFleet(short_tmp / f"f{len(fleets)}", extra + fleet_config(agent, scheduler))
        fleets.append(f)
        f.start_broker()
        f.start_agent("a1")
        wait_for(lambda: "a1" in f.live_agents(), 15)
        return f
    yield make
    for f in fleets:
        f.close()


def test_client_wait_returns_the_final_job(fleet, monkeypatch):
    f = fleet()
    for name, value in f.env.items():
        if name.startswith("LUZIA_"):
            monkeypatch.setenv(name, value)
    cfg = load()
    ok = client.submit("demo", "hello", cfg=cfg)
    bad = client.submit("demo", "FAIL_DEMO", cfg=cfg)
    job = client.wait(ok, timeout=60, cfg=cfg)
    assert (job["state"], job["exit_code"], job["id"]) == ("completed", 0, ok)
    assert job["submitted_at"] <= job["started_at"] <= job["finished_at"]
    assert job["attempts"][0]["host"] == "a1"
    failed = client.wait(bad[:10], cfg=cfg)                  # a prefix; no limit
    assert (failed["state"], failed["exit_code"], failed["reason"]) == ("failed", 1, "exit 1")
    f.control("agents.drain", name="a1")
    stuck = client.submit("demo", "never runs", cfg=cfg)
    with pytest.raises(WaitTimeout, match=f"job {stuck} has not ended after 0.5s"):
        client.wait(stuck, timeout=0.5, cfg=cfg)
    with pytest.raises(NotFound):
        client.wait("999999-ffffffffffff", timeout=5, cfg=cfg)


def test_an_attempt_count_says_what_happened_and_a_waiting_job_has_no_bar(fleet):
    f = fleet(extra="max_retries = 1\n")
    job_id = f.submit("demo", "FAIL_DEMO twice")
    wait_for(lambda: f.state(job_id) == "failed", 60)
    text = f.cli("jobs", job_id).stdout.decode()
    assert f"job        {job_id}  (attempt 2 of 2)" in text
    assert "reason     exit 1" in text and "   exit 1\n" in text
    assert "  #1 a1" in text and "exit 1  exit 1" in text
    f.control("agents.drain", name="a1")                     # the manual retry waits
    assert f.cli("retry", job_id).returncode == 0
    text = f.cli("jobs", job_id).stdout.decode()
    assert text.startswith("PENDING [····················]\n"), text    # no stale 100 %
    assert "(attempt 3 (2 allowed + 1 manual retry), waiting)" in text
    assert "why        a1 draining" in text and "reason     retry requested" in text
    f.control("agents.undrain", name="a1")
    wait_for(lambda: f.state(job_id) == "failed" and f.job(job_id)["attempt"] == 4, 60)
    text = f.cli("jobs", job_id).stdout.decode()
    assert "(attempt 4 (3 by automatic retries, 2 allowed each time + 1 manual retry))" in text


def test_queue_locks_and_stats_by_agent(fleet):
    f = fleet(agent=f'runner = "subprocess"\n{SLEEPER}', scheduler="per_user = true")
    first = f.submit("demo", "30")
    second = f.submit("demo", "0")
    wait_for(lambda: f.state(first) == "running", 30)
    locks = json.loads(f.cli("queue", "locks", "--json").stdout)
    (lock,) = locks["locks"]
    assert (lock["job"], lock["host"], lock["state"], lock["waiting"]) == (first, "a1", "held", 1)
    assert lock["stale_at"] - lock["since"] == 3600
    text = f.cli("queue", "locks").stdout.decode()
    assert first in text and "held" in text and "a lock goes stale after 1h" in text
    assert f.state(second) == "pending"
    assert "is running" in f.job(second)["why"]
    f.cli("cancel", first)
    wait_for(lambda: f.state(second) == "completed", 30)
    stats = json.loads(f.cli("stats", "--json").stdout)
    (row,) = stats["by_agent"]
    assert (row["name"], row["jobs"], row["attempts"], row["completed"]) == ("a1", 2, 2, 1)
    text = f.cli("stats", "--by", "agent").stdout.decode()
    assert text.splitlines()[0].split()[:3] == ["AGENT", "JOBS", "ATTEMPTS"] and "USER" not in text


def test_a_retired_agent_is_forgotten_only_once_it_is_dead(fleet):
    f = fleet()
    out = f.cli("agents", "forget", "a1")
    assert out.returncode == 1 and b"agent a1 is live" in out.stderr
    f.kill("agent-a1", signal.SIGKILL)
    wait_for(lambda: "a1" not in f.live_agents(), 15)
    out = f.cli("agents", "forget", "a1", "--dry-run")
    assert out.returncode == 0 and b"would forget it" in out.stdout
    assert f.agents()
    out = f.cli("agents", "forget", "a1")
    assert out.returncode == 0 and out.stdout.startswith(b"a1: forgotten")
    assert f.agents() == [] and f.cli("agents", "status").stdout.startswith(b"no agents")


def test_with_only_the_broker_stopped_the_hints_point_at_the_supervisor(short_tmp):
    f = LocalFleet(short_tmp / "f", fleet_config('runner = "subprocess"')
                   + "[supervisor]\nping_interval = 0.5\n")
    try:
        f.start("supervisor", [PY, "-m", "luzia.supervisor"])
        wait_for(lambda: f.ping(), 30, message="the supervised broker answers")
        assert f.cli("supervisor", "stop", "broker", "--dry-run").stdout.startswith(b"broker: would stop")
        assert f.ping()
        assert f.cli("supervisor", "stop", "broker").returncode == 0
        wait_for(lambda: not f.ping(), 15)
        out = f.cli("jobs")
        assert out.returncode == 3 and b"`luzia supervisor start broker`" in out.stderr
        out = f.cli("demo", "while it is stopped")
        assert out.returncode == 0 and b"luzia supervisor start broker" in out.stderr
        job_id = out.stdout.decode().strip().rsplit(":", 1)[1]
        assert f.cli("jobs", job_id).stdout.startswith(b"SPOOLED [")
        assert jobs_json(f.cli("jobs", job_id, "--json"))["state"] == "spooled"
        assert f.cli("supervisor", "start", "broker").returncode == 0
        wait_for(lambda: f.state(job_id) == "completed", 60)
    finally:
        f.close()
