"""Operator ops on the broker's model (no sockets): the advice of agents.allocate,
argument checks, the accounting of an empty store, and every op's documentation."""

from __future__ import annotations

from pathlib import Path

import pytest

from luzia.broker import accounting, lifecycle, ops
from luzia.broker.ops.request import Args
from luzia.errors import BadRequest
from tests.broker.harness import make_model, spec


@pytest.fixture
def m():
    model = make_model()
    yield model
    model.store.close()


def op(m, name: str, **args):
    return ops.OPS[name](m, Args(args))


def test_sustained_growth_and_waiting_types_are_recommended(m):
    for _ in range(12):
        lifecycle.accept(m, spec(type="reasoning"))
    m.store.commit()
    advice = op(m, "agents.allocate")
    reasoning = next(p for p in advice["placements"] if p["type"] == "reasoning")
    assert reasoning == {"type": "reasoning", "agent": None, "load": None, "why": "no agent offers it"}
    assert any(r.startswith("scale up: the queue grew by 12") for r in advice["recommendations"])
    assert any("add capacity for 'reasoning'" in r for r in advice["recommendations"])
    assert op(m, "queue.status")["by_priority"]["normal"] == 12


def test_bad_arguments_are_bad_requests(m):
    with pytest.raises(BadRequest, match="limit"):
        op(m, "queue.status", limit=0)
    with pytest.raises(BadRequest, match="priority must be one of"):
        op(m, "queue.flush", priority="urgent")
    with pytest.raises(BadRequest, match="no agent name"):
        op(m, "agents.drain")
    with pytest.raises(BadRequest, match="wrong type"):
        op(m, "history", user=3)


def test_stats_of_an_empty_store(m):
    assert op(m, "stats") == {"by_user": [], "by_project": [], "by_agent": [], "total": {
        "name": "all", "jobs": 0, "completed": 0, "failed": 0, "killed": 0, "rejected": 0,
        "run_seconds": 0, "mean_wait": 0, "mean_run": 0, "cost_usd": 0, "tokens_in": 0,
        "tokens_out": 0, "cache_read": 0, "cache_write": 0}}
    assert accounting.span(None, 3.0) is None and accounting.span(1.0, 3.5) == 2.5


def test_every_op_is_documented_by_its_docstring_and_in_the_protocol_doc():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md").read_text()
    for name, fn in ops.OPS.items():
        assert (fn.__doc__ or "").startswith(name + " "), name
        assert f"`{name}`" in doc, name
    assert sum(len(noun.OPS) for noun in ops.NOUNS) == len(ops.OPS)     # no name twice
