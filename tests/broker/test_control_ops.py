"""Operator ops on a real Broker stepped in the test's thread: the advice of
agents.allocate, argument checks, and the accounting of an empty store."""

from __future__ import annotations

import pytest

from luzia.broker import accounting, ops
from luzia.broker.ops.request import Args
from luzia.errors import BadRequest
from tests.broker.harness import make_broker, spec


@pytest.fixture
def broker(short_tmp):
    home = short_tmp / "h"
    home.mkdir()
    b = make_broker(home)
    yield b
    b.close()


def op(b, name: str, **args):
    return ops.OPS[name](b.model, Args(args))


def test_sustained_growth_and_waiting_types_are_recommended(broker):
    for _ in range(12):
        broker.submit(spec(type="reasoning"))
    broker.model.store.commit()
    advice = op(broker, "agents.allocate")
    reasoning = next(p for p in advice["placements"] if p["type"] == "reasoning")
    assert reasoning == {"type": "reasoning", "agent": None, "load": None, "why": "no agent offers it"}
    assert any(r.startswith("scale up: the queue grew by 12") for r in advice["recommendations"])
    assert any("add capacity for 'reasoning'" in r for r in advice["recommendations"])
    assert op(broker, "queue.status")["by_priority"]["normal"] == 12


def test_bad_arguments_are_bad_requests(broker):
    with pytest.raises(BadRequest, match="limit"):
        op(broker, "queue.status", limit=0)
    with pytest.raises(BadRequest, match="priority must be one of"):
        op(broker, "queue.flush", priority="urgent")
    with pytest.raises(BadRequest, match="no agent name"):
        op(broker, "agents.drain")
    with pytest.raises(BadRequest, match="wrong type"):
        op(broker, "history", user=3)


def test_stats_of_an_empty_store(broker):
    assert op(broker, "stats") == {"by_user": [], "by_project": [], "total": {
        "name": "all", "jobs": 0, "completed": 0, "failed": 0, "killed": 0, "rejected": 0,
        "run_seconds": 0, "mean_wait": 0, "mean_run": 0}}
    assert accounting.span(None, 3.0) is None and accounting.span(1.0, 3.5) == 2.5
