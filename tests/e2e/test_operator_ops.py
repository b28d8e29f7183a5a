"""Operator control ops (luzia/broker/ops/) against a real broker with two real
agents: queue status/flush, agents status/allocate/drain/undrain, history and stats."""

from __future__ import annotations

import signal

import pytest

from tests.fleet import SLEEPER, LocalFleet, fleet_config
from tests.helpers import wait_for

PROJECTS = """
[projects.demo]
user = "alice"
[projects.ops]
user = "bob"
"""


@pytest.fixture
def fleet(short_tmp):
    text = fleet_config(f'slots = 1\nrunner = "subprocess"\n{SLEEPER}',
                        "per_user = false\nmax_per_project = 0") + PROJECTS
    fleet = LocalFleet(short_tmp / "f", text)
    fleet.start_broker()
    fleet.start_agent("a1")
    fleet.start_agent("a2")
    wait_for(lambda: fleet.live_agents() == {"a1", "a2"}, 20, message="both agents live")
    yield fleet
    fleet.close()


def agent(fleet: LocalFleet, name: str) -> dict:
    return next(a for a in fleet.control("agents.status") if a["name"] == name)


def test_drain_queue_allocate_flush_history(fleet):
    fleet.control("agents.drain", name="a2")
    assert agent(fleet, "a2")["health"] == "draining"
    first = fleet.submit("demo", "1.5")
    wait_for(lambda: fleet.state(first) == "running", 15)
    assert fleet.job(first)["host"] == "a1"
    fleet.control("agents.drain", name="a1")            # a1 finishes what it runs ...
    normal = fleet.submit("demo", "0")
    low = fleet.submit("ops", "0", "--priority", "low")
    high = fleet.submit("ops", "0", "--priority", "high")
    wait_for(lambda: fleet.control("queue.status")["pending"] == 3, 15)

    queue = fleet.control("queue.status", verbose=True)
    assert queue["by_priority"] == {"critical": 0, "high": 1, "normal": 1, "low": 1}
    assert queue["by_project"] == {"demo": 1, "ops": 2}
    assert queue["by_user"] == {"alice": 1, "bob": 2}
    assert [j["id"] for j in queue["jobs"]] == [high, normal, low]
    assert queue["oldest_wait"] > 0 and "draining" in queue["jobs"][0]["why"]
    assert [j["id"] for j in fleet.control("queue.status", verbose=True, limit=1)["jobs"]] == [high]

    status = agent(fleet, "a1")
    assert set(status["load_parts"]) == {"cpu", "memory", "queue"}
    assert status["capabilities"] == ["code", "text", "reasoning"] and status["slots"] == 1
    allocate = fleet.control("agents.allocate")
    code = next(p for p in allocate["placements"] if p["type"] == "code")
    assert code["agent"] is None and "a2 draining" in code["why"]
    assert any("add capacity for 'code'" in r for r in allocate["recommendations"])

    dry = fleet.control("queue.flush", priority="low", dry_run=True)
    assert [j["id"] for j in dry["jobs"]] == [low] and dry["count"] == 1
    assert fleet.state(low) == "pending"
    fleet.control("queue.flush", priority="low")
    assert fleet.state(low) == "killed"

    wait_for(lambda: fleet.state(first) == "completed", 15)   # ... and finishes it
    assert fleet.state(normal) == "pending" and fleet.job(first)["host"] == "a1"
    fleet.control("agents.undrain", name="a2")
    wait_for(lambda: fleet.state(normal) == "completed" and fleet.state(high) == "completed", 20)
    assert fleet.job(high)["host"] == "a2" and fleet.job(normal)["host"] == "a2"
    assert fleet.job(high)["started_at"] < fleet.job(normal)["started_at"]
    code = next(p for p in fleet.control("agents.allocate")["placements"] if p["type"] == "code")
    assert code["agent"] == "a2" and "lowest load score" in code["why"]

    history = fleet.control("history", user="bob")
    assert {j["id"] for j in history} == {low, high}
    ran = next(j for j in history if j["id"] == high)
    assert ran["run"] >= 0 and ran["wait"] > 0
    stats = fleet.control("stats")
    users = {row["name"]: row for row in stats["by_user"]}
    assert users["bob"]["jobs"] == 2 and users["bob"]["killed"] == 1
    assert users["alice"]["completed"] == 2 and users["alice"]["run_seconds"] >= 1.5
    assert stats["total"]["jobs"] == 4 and stats["total"]["mean_wait"] > 0
    assert fleet.control("jobs.exist", ids=[high, low, "000000-000000000000"]) == {
        high: "completed", low: "killed"}
    with pytest.raises(RuntimeError, match="no agent 'nope'"):
        fleet.control("agents.drain", name="nope")


def test_a_drain_outlives_a_broker_restart(fleet):
    fleet.control("agents.drain", name="a2")
    fleet.kill("broker", signal.SIGKILL)
    fleet.start_broker()
    wait_for(lambda: fleet.live_agents() == {"a1", "a2"}, 20, message="both agents back")
    assert agent(fleet, "a2")["health"] == "draining"
    job = fleet.submit("demo", "0")
    wait_for(lambda: fleet.state(job) == "completed", 15)
    assert fleet.job(job)["host"] == "a1"
    fleet.control("agents.undrain", name="a2")
    assert agent(fleet, "a2")["health"] != "draining"
