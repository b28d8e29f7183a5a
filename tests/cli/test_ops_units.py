"""The operator commands' pure parts: --since, import ids, top's alerts and plain view."""

from __future__ import annotations

import time

import pytest

from luzia.cli.agents import gpu_cell
from luzia.cli.history import since_time
from luzia.cli.oldqueues import Item, _request, bead as read_bead
from luzia.cli.top import Snapshot, alerts, plain
from luzia.errors import UsageError
from luzia.ids import JOB_ID_RE


def test_since_takes_durations_and_dates():
    two_hours_ago = since_time("2h")
    assert two_hours_ago is not None and abs(two_hours_ago - (time.time() - 7200)) < 5
    assert since_time("2026-01-09") == time.mktime(time.strptime("2026-01-09", "%Y-%m-%d"))
    assert since_time(None) is None
    with pytest.raises(UsageError, match="90m, 2h, 7d"):
        since_time("last tuesday")


def test_import_ids_are_stable_and_valid():
    a = Item("beads", "bd-1", created=1767088800.0)
    assert a.job_id == Item("beads", "bd-1", created=1767088800.0).job_id
    assert a.job_id != Item("pending-requests", "bd-1", created=1767088800.0).job_id
    assert JOB_ID_RE.fullmatch(a.job_id) and JOB_ID_RE.fullmatch(Item("beads", "x").job_id)


def test_request_and_bead_mapping():
    urgent = _request({"id": "r1", "description": "URGENT: disk full", "status": "pending"}, 1, False)
    assert urgent.priority == "critical" and not urgent.skip
    review = _request({"id": "r2", "description": "x", "status": "pending_review"}, 2, True)
    assert not review.skip and review.priority is None
    bead = read_bead({"id": "bd-9", "title": "Plan", "status": "open", "priority": 4,
                  "labels": ["reasoning"]})
    assert (bead.priority, bead.type, bead.skip) == (3, "reasoning", "")


def test_top_alerts_and_plain_view():
    snap = Snapshot(queue={"pending": 3, "oldest_wait": 4000, "by_priority": {"high": 3}},
                    agents=[{"name": "gpu1", "health": "dead", "load": 0.5, "running": 0, "slots": 2}],
                    running=[{"id": "120000-aaaaaaaaaaaa", "stalled": True, "progress": 40,
                              "project": "p\x1b[31m", "host": "gpu1"}])
    levels = [level for level, _ in alerts(snap)]
    assert levels == ["CRITICAL", "RED", "RED", "YELLOW"]
    text = plain(snap)
    assert "\x1b" not in text and "high 3" in text and "[████░░░░░░] 40%" in text


def test_gpu_cell_shows_nvml_readings_only_when_reported():
    assert gpu_cell({"gpu_free_gb": -1.0, "gpu_util": -1.0}) == "-"
    assert gpu_cell({"gpu_free_gb": 10.0, "gpu_total_gb": 24.0, "gpu_reserved_gb": 8.0,
                     "gpu_util": 0.35}) == "35% util, 10 GB free of 24, 8 reserved"
