"""`luzia import beads PATH --follow` for real: a broker, an agent and the watcher as
processes of their own, the issues file written by the watcher and by another process at
the same time; and the watcher as a supervisor program (seed 003's live Beads source)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from luzia.beadsfile import BeadsFile
from tests.fleet import PY, LocalFleet, fleet_config
from tests.helpers import wait_for

PROJECT = '[projects.overbits]\nuser = "ops"\n'
ISSUES = [
    '{"id": "bd-1", "title": "Fix the login button", "status": "open", "priority": 1, '
    '"labels": ["code"], "created_at": "2025-12-30T10:00:00Z", "notes": "from the old queue", '
    '"x": {"k": [1, 2.50, "caf\\u00e9"]}}',
    '{"id":"bd-2","title":"Summarize FAIL_DEMO the report","status":"open","priority":2}',
    '{"id": "bd-3", "title": "Long done", "status": "closed", "priority": 3, "weird" :  true }',
]
APPENDER = r"""
import fcntl, json, os, sys, time
path, count = sys.argv[1], int(sys.argv[2])
for n in range(count):
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    with open(path, "a") as f:
        f.write(json.dumps({"id": f"new-{n}", "title": f"appended {n}", "status": "open"}) + "\n")
    os.close(fd)
    time.sleep(0.02)   # an agent filing issues as it goes, not a burst
"""


def issues(path: Path) -> dict[str, dict]:
    return {e["id"]: e for e in map(json.loads, path.read_text().splitlines())}


def raw_line(path: Path, issue: str) -> str:
    return next(line for line in path.read_text().splitlines() if f'"{issue}"' in line)


@pytest.fixture
def beads(short_tmp):
    path = short_tmp / "overbits" / ".beads" / "issues.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(ISSUES) + "\n")
    return path


@pytest.fixture
def fleet(short_tmp):
    fleet = LocalFleet(short_tmp / "f", fleet_config('runner = "subprocess"', "per_user = false")
                       + PROJECT)
    fleet.start_broker()
    fleet.start_agent("a1")
    wait_for(lambda: "a1" in fleet.live_agents(), 15)
    yield fleet
    fleet.close()


@pytest.mark.long
def test_follow_takes_issues_writes_their_state_back_and_loses_no_line(fleet, beads):
    fleet.start("watcher", [PY, "-m", "luzia.cli", "import", "beads", str(beads.parent.parent),
                                      "--follow", "--interval", "0.2"])
    appender = subprocess.Popen([sys.executable, "-c", APPENDER, str(beads), "20"])
    assert appender.wait(60) == 0
    wait_for(lambda: issues(beads)["bd-1"]["status"] == "closed", 60, message="bd-1 closed")
    wait_for(lambda: all(issues(beads)[f"new-{n}"]["status"] == "closed" for n in range(20)), 90,
             message="every appended issue taken and closed")
    wait_for(lambda: "notes" in issues(beads)["bd-2"], 60, message="bd-2's failure noted")
    found = issues(beads)
    assert len(beads.read_text().splitlines()) == 23          # no line lost, none doubled
    bd1 = found["bd-1"]
    job = bd1["close_reason"].split()[2]
    assert bd1["close_reason"] == f"luzia job {job} completed (exit 0)"
    assert fleet.state(job) == "completed" and fleet.job(job)["metadata"]["beads_id"] == "bd-1"
    # its other fields byte for byte; what was written back after them (updated_at before
    # or after closed_at: the watcher may or may not have seen the job running first)
    kept = ISSUES[0][:-1].replace('"status": "open"', '"status": "closed"') + ', "'
    assert raw_line(beads, "bd-1").startswith(kept)
    assert list(bd1)[-3:] in (["updated_at", "closed_at", "close_reason"],
                              ["closed_at", "updated_at", "close_reason"])
    assert raw_line(beads, "bd-3") == ISSUES[2]                 # never ours: untouched
    bd2 = found["bd-2"]
    assert bd2["status"] == "open" and "failed (exit 1)" in bd2["notes"]
    failed = bd2["notes"].split()[2]
    assert f"`luzia retry {failed}` runs it again" in bd2["notes"]
    assert raw_line(beads, "bd-2").startswith('{"id":"bd-2","title":"Summarize FAIL_DEMO the report",'
                                              '"status":"open","priority":2,')

    # edited open again after its job ended: a new job, and closed again
    BeadsFile(beads).update({"bd-1": {"status": "open",
                                      "updated_at": datetime.now(UTC).isoformat()}})
    wait_for(lambda: issues(beads)["bd-1"]["status"] == "closed"
             and job not in issues(beads)["bd-1"]["close_reason"], 60, message="bd-1 reopened, closed")
    again = issues(beads)["bd-1"]["close_reason"].split()[2]
    assert again != job and fleet.state(again) == "completed"
    log = fleet.output("watcher")
    assert f"bd-1: taken (reopened) -> job {again}" in log
    assert log.count("bd-1: taken") == 2 and log.count("new-7: taken") == 1


def test_the_supervisor_keeps_the_watcher_running_as_a_program(short_tmp, beads):
    argv = json.dumps([PY, "-m", "luzia.cli", "import", "beads", str(beads), "--follow",
                       "--interval", "0.2"])
    fleet = LocalFleet(short_tmp / "f", fleet_config('runner = "subprocess"') + PROJECT
                       + f"[supervisor]\nping_interval = 0.5\nstart_grace = 0.5\n"
                         f"[supervisor.programs]\nbeads = {argv}\n")
    try:
        fleet.start("supervisor", [PY, "-m", "luzia.supervisor"])

        def states() -> dict[str, str]:
            out = fleet.cli("supervisor", "status", "--json")
            return {r["name"]: r["state"] for r in json.loads(out.stdout or "[]")} \
                if out.returncode == 0 else {}
        wait_for(lambda: states() == {"broker": "running", "agent": "running", "beads": "running"},
                 30, message="broker, agent and the watcher running")
        wait_for(lambda: issues(beads)["bd-1"]["status"] == "closed", 60, message="bd-1 closed")
        assert "bd-1: closed (job" in (fleet.home / "log" / "beads.log").read_text()
    finally:
        fleet.close()
