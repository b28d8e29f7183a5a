"""How a stalled job looks in the list and the detail view."""

from __future__ import annotations

from luzia.cli import job_views as jobs

NOW = 1_000_000.0


def job(**kw):
    base = {"id": "120000-aaaaaaaaaaaa", "state": "running", "project": "demo", "user": "u",
            "priority": "normal", "submitted_at": NOW - 900, "started_at": NOW - 800,
            "progress": 40, "stalled": False, "stalled_since": None}
    base.update(kw)
    return base


def test_a_stalled_running_job_says_for_how_long():
    stalled = job(stalled=True, stalled_since=NOW - 300)
    assert jobs.state_cell(stalled, NOW) == "running (stalled 5m)"
    assert "stalled    no output for 5m" in "\n".join(jobs.job_lines(stalled, NOW))
    assert jobs.state_cell(job(), NOW) == "running"
    assert jobs.state_cell(job(stalled=True, state="failed"), NOW) == "failed"
    # a broker that has the flag but not yet the time (it just restarted)
    assert jobs.state_cell(job(stalled=True), NOW) == "running (stalled ?)"
    assert jobs.state_cell(job(stalled=True, stalled_since="x\x1b[31m"), NOW) == "running (stalled ?)"
