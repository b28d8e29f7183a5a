"""`luzia queue|agents|history|stats` run as a user runs them, against a real broker with
two real agents and real jobs: tables without a TTY, --json, one-line errors."""

from __future__ import annotations

import json

from tests.e2e.test_operator_ops import agent, fleet  # noqa: F401  (the fixture)
from tests.fleet import LocalFleet, jobs_json
from tests.helpers import wait_for


def run(fleet: LocalFleet,  # noqa: F811 (not the fixture: the fleet it was given)
         *args: str, code: int = 0) -> str:
    out = fleet.cli(*args)
    assert out.returncode == code, (args, out.stdout, out.stderr)
    text = out.stdout.decode()
    assert "\x1b" not in text       # no colour without a terminal
    return text


def test_operator_commands(fleet):  # noqa: F811
    assert "draining" in run(fleet, "agents", "drain", "a2")
    assert "draining" in run(fleet, "agents", "drain", "a1")
    added = json.loads(run(fleet, "queue", "add", "ops", "0", "--priority", "high",
                           "--metadata", '{"ticket": 7}', "--json"))
    low = fleet.submit("demo", "0", "--priority", "low")
    wait_for(lambda: fleet.control("queue.status")["pending"] == 2, 15)
    assert fleet.job(added["id"])["metadata"] == {"ticket": 7}

    status = run(fleet, "queue", "status", "--verbose")
    assert "by priority critical 0  high 1  normal 0  low 1" in status
    assert "by project  demo 1, ops 1" in status
    lines = status.splitlines()
    assert lines.index(next(line for line in lines if added["id"] in line)) < \
        lines.index(next(line for line in lines if low in line))          # high runs first
    assert jobs_json(fleet.cli("queue", "status", "--json"))["by_user"]

    table = run(fleet, "agents", "status", "--sort-by", "load")
    assert table.splitlines()[0].split()[:3] == ["AGENT", "HEALTH", "SLOTS"]
    assert {a["name"] for a in jobs_json(fleet.cli("agents", "status", "--json"))} == {"a1", "a2"}
    advice = run(fleet, "agents", "allocate")
    assert "(waits)" in advice and "add capacity for 'code'" in advice
    assert jobs_json(fleet.cli("agents", "allocate", "--json"))["placements"]

    refused = fleet.cli("queue", "flush")
    assert refused.returncode == 2 and len(refused.stderr.decode().strip().splitlines()) == 1
    assert "--all" in refused.stderr.decode()
    dry = run(fleet, "queue", "flush", "--priority", "low", "--dry-run")
    assert low in dry and "would remove 1 pending job" in dry
    assert low in run(fleet, "queue", "flush", "--priority", "low")
    assert fleet.state(low) == "killed"

    assert "taking jobs again" in run(fleet, "agents", "undrain", "a1")
    wait_for(lambda: fleet.state(added["id"]) == "completed", 20)
    history = run(fleet, "history", "--since", "1h")
    assert added["id"] in history and low in history and "killed" in history
    assert [j["id"] for j in jobs_json(fleet.cli("history", "--user", "bob", "--json"))] == [added["id"]]
    stats = run(fleet, "stats")
    assert "bob" in stats and "alice" in stats
    assert jobs_json(fleet.cli("stats", "--json"))["total"]["jobs"] == 2

    missing = fleet.cli("agents", "drain", "nope")
    assert missing.returncode == 2 and missing.stderr.decode().count("\n") == 1
    bad_since = fleet.cli("history", "--since", "yesterday")
    assert bad_since.returncode == 2 and "90m, 2h, 7d" in bad_since.stderr.decode()
    fleet.kill("broker")
    down = fleet.cli("queue", "status")
    assert down.returncode == 3 and down.stderr.decode().count("\n") == 1
    assert "start it with" in down.stderr.decode()
