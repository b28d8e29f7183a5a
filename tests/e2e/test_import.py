"""`luzia import pending-requests|beads` against a real broker and agent, with sample files
built from seeds 002 and 003: what is taken, what is skipped and why, and that a second
run takes nothing twice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.fleet import LocalFleet, fleet_config
from tests.helpers import wait_for

DATA = Path(__file__).parent / "data"


@pytest.fixture
def fleet(short_tmp):
    text = fleet_config('runner = "subprocess"', "per_user = false") + \
        '[projects.overbits]\nuser = "ops"\n[projects.demo]\nuser = "alice"\n'
    fleet = LocalFleet(short_tmp / "f", text)
    fleet.start_broker()
    fleet.start_agent("a1")
    wait_for(lambda: "a1" in fleet.live_agents(), 15)
    fleet.control("agents.drain", name="a1")        # keep the imported jobs in the queue
    yield fleet
    fleet.close()


def imported(fleet: LocalFleet, *args: str) -> dict:
    out = fleet.cli("import", *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_pending_requests_are_taken_once(fleet):
    path = str(DATA / "pending-requests.json")
    dry = imported(fleet, "pending-requests", path, "--dry-run")
    assert dry["dry_run"] and [t["key"] for t in dry["taken"]] == ["req-001", "req-002"]
    first = imported(fleet, "pending-requests", path)
    assert {t["key"]: t["priority"] for t in first["taken"]} == {"req-001": "high", "req-002": "critical"}
    reasons = {s["key"]: s["reason"] for s in first["skipped"]}
    assert "unknown project 'unknown-project'" in reasons["req-003"]
    assert "awaits review" in reasons["req-004"] and reasons["req-005"] == "status completed"
    assert "no task text" in reasons["req-006"] and "not a JSON object" in reasons["#7"]
    ids = [t["id"] for t in first["taken"]]
    wait_for(lambda: all(fleet.state(i) == "pending" for i in ids), 15)
    job = fleet.job(ids[0])
    assert job["project"] == "overbits" and job["metadata"]["request_id"] == "req-001"

    again = fleet.cli("import", "pending-requests", path, "--project", "demo", "--include-review")
    report = again.stdout.decode()
    assert again.returncode == 0 and "already imported" in report
    assert "took 2, skipped 5 (2 already imported)" in report   # req-003, req-004 are new now
    assert fleet.control("queue.status")["pending"] == 4

    broken = fleet.home / "broken.json"
    broken.write_text("{nope")
    out = fleet.cli("import", "pending-requests", str(broken))
    assert out.returncode == 2 and "not valid JSON" in out.stderr.decode()
    assert out.stderr.decode().count("\n") == 1


def test_beads_are_taken_once(fleet, short_tmp):
    repo = short_tmp / "overbits"
    shutil.copytree(DATA / "overbits", repo)
    first = imported(fleet, "beads", str(repo))
    taken = {t["key"]: t for t in first["taken"]}
    assert set(taken) == {"bd-a1f3", "bd-b2c4", "bd-c3d5", "bd-f6a8"}
    assert taken["bd-c3d5"]["priority"] == "critical" and taken["bd-f6a8"]["priority"] == "low"
    reasons = {s["key"]: s["reason"] for s in first["skipped"]}
    assert reasons == {"bd-d4e6": "status closed",
                       "bd-e5f7": "status in_progress (running in the old dispatcher)",
                       "line 6": "line 6 is not a Beads issue (JSON with an id)"}
    wait_for(lambda: fleet.control("queue.status")["pending"] == 4, 15)
    job = fleet.job(taken["bd-a1f3"]["id"])
    assert job["type"] == "code" and job["project"] == "overbits"
    assert job["task"].startswith("Fix the login button") and job["metadata"]["beads_id"] == "bd-a1f3"
    assert fleet.job(taken["bd-c3d5"]["id"])["type"] == "reasoning"

    again = imported(fleet, "beads", str(repo / ".beads" / "issues.jsonl"))
    assert again["taken"] == [] and sum("already imported" in s["reason"] for s in again["skipped"]) == 4
    fleet.control("agents.undrain", name="a1")
    wait_for(lambda: all(fleet.state(t["id"]) == "completed" for t in taken.values()), 30)
    assert fleet.control("queue.status")["pending"] == 0
