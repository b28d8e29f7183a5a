"""Agent-aware jobs in the broker's model (docs/AGENTS.md): usage summed over attempts and
into the spend ledger, budgets blocking a user with the reason, a usage limit pausing a job
and its account fleet-wide, the pause cap, cancel and retry (--fresh) of a paused job; the
agent fields on the wire (protocol 4) and what an older peer's silence means."""

from __future__ import annotations

import dataclasses
import time

import msgpack
import pytest

from luzia import message, protocol
from luzia.agentconf import Budget, BudgetsConfig, LimitsConfig
from luzia.broker import intake, lifecycle, ops
from luzia.broker.agents import AgentHandler
from luzia.broker.fleet import Agent
from luzia.broker.ops.request import Args
from luzia.config import Config
from luzia.states import JobState
from tests.broker.harness import make_model, spec


@pytest.fixture
def m():
    cfg = dataclasses.replace(Config(), budgets=BudgetsConfig(users={"alice": Budget(day=1.0)}),
                              limits=LimitsConfig(max_pauses=2))
    model = make_model(cfg)
    yield model
    model.store.close()


def join(m, name: str, accounts: list[str]) -> Agent:
    agent = Agent(name=name, identity=name.encode(), slots=1, capabilities=["code"],
                  accounts=accounts)
    m.fleet.join(agent)
    m.accounts.apply()
    return agent


def run_one(m, handler: AgentHandler, agent: Agent, cost: float = 0.5, limited: float = 0.0,
            user: str = "alice"):
    """Submit a job, place it on `agent`, and end it with this usage (and limit)."""
    job = intake.accept(m, spec(user=user))
    assert job is not None
    picked = m.sched.pick()
    assert picked == (job.id, agent.name), m.sched.why(job.id)
    lifecycle.assign(m, job, agent)
    usage = protocol.Usage(cost_usd=cost, tokens_in=10, tokens_out=5, session_id=f"s-{job.id}")
    handler.done(agent, protocol.Done(job_id=job.id, attempt=job.attempt, exit_code=1 if limited else 0,
                                      usage=usage, limited_until=limited,
                                      limit="Claude AI usage limit reached|1" if limited else ""))
    return job


def test_usage_sums_and_the_budget_blocks_the_user(m):
    handler = AgentHandler(m, lambda *_: None)
    a = join(m, "a1", [])
    first = run_one(m, handler, a, cost=0.6)
    assert first.state is JobState.COMPLETED and first.cost_usd == 0.6 and first.tokens_in == 10
    second = run_one(m, handler, a, cost=0.5)
    assert second.cost_usd == 0.5
    third = intake.accept(m, spec(user="alice"))
    assert third is not None and m.sched.pick() is None
    assert m.sched.why(third.id) == \
        "budget: user alice spent $1.10 of $1.00 today; resets 00:00 UTC"
    other = intake.accept(m, spec(user="bob"))      # other users are not held back
    assert other is not None and m.sched.pick() == (other.id, "a1")
    rows = m.budgets.rows(time.time())
    assert rows[0]["over"] and rows[0]["spent"] == pytest.approx(1.1)


def test_a_usage_limit_pauses_the_job_and_its_account(m):
    handler = AgentHandler(m, lambda *_: None)
    a = join(m, "a1", ["team-a"])
    until = time.time() + 3600
    job = run_one(m, handler, a, cost=0.0, limited=until)
    assert job.state is JobState.PAUSED and job.paused_until == until and job.pauses == 1
    assert job.resume == f"s-{job.id}" and m.out.events[-1][0] == "job.paused"
    assert m.fleet.get("a1").limited_until == until
    m.store.commit()
    (row,) = ops.OPS["stats"](m, Args({}))["by_agent"]     # a pause is no failure of a1's
    assert (row["name"], row["attempts"], row["completed"], row["failed"]) == ("a1", 1, 0, 0)
    assert ops.OPS["jobs.cancel"](m, Args({"ids": [job.id], "dry_run": True}))[0]["result"] \
        == "would kill" and job.state is JobState.PAUSED
    assert ops.OPS["jobs.get"](m, Args({"id": job.id}))["causes"]["next"] is None
    nxt = intake.accept(m, spec(user="alice"))
    assert nxt is not None and m.sched.pick() is None
    assert m.sched.why(nxt.id).startswith("account team-a limited until ")
    b = join(m, "b1", ["team-a", "team-b"])          # team-b is free: b1 takes work
    assert m.sched.pick() == (nxt.id, "b1")
    lifecycle.assign(m, nxt, b)
    assign = [protocol.decode(f[1:]) for f in m.out.to_agents][-1]
    assert isinstance(assign, protocol.Assign) and assign.account == "team-b"
    # an operator's retry resumes it now, afresh when asked
    lifecycle.retry(m, job, fresh=True)
    assert m.jobs[job.id].state.value == "pending" and job.resume == ""
    # cancelling a paused job kills it at once
    lifecycle.cancel(m, job)
    again = run_one(m, handler, join(m, "c1", ["team-c"]), cost=0.0, limited=until, user="dave")
    assert lifecycle.cancel(m, again) == "killed" and again.state is JobState.KILLED


def test_the_pause_cap_fails_the_job(m):
    handler = AgentHandler(m, lambda *_: None)
    a = join(m, "a1", [])
    job = run_one(m, handler, a, cost=0.0, limited=time.time() - 1)   # a reset gone by
    for _ in range(2):
        m.accounts.expire(time.time())
        lifecycle.unpause(m, job)
        assert m.sched.pick() == (job.id, "a1")
        lifecycle.assign(m, job, a)
        handler.done(a, protocol.Done(job_id=job.id, attempt=job.attempt, exit_code=1,
                                      limited_until=time.time() - 1, limit="limit reached"))
    assert job.state is JobState.FAILED and "paused 2 times already" in job.reason


JOB = "113754-a2f5c10e9b3d"


def test_the_agent_fields_are_protocol_4_and_an_older_peer_means_none():
    # what a protocol-3 agent or broker sends: the fields of protocol 4 take their defaults
    done = protocol.decode([b"LZ1", b"DONE", msgpack.packb(
        {"job_id": JOB, "attempt": 1, "exit_code": 1, "files_changed": -1})])
    assert isinstance(done, protocol.Done)
    assert (done.usage, done.limited_until, done.limit) == (protocol.NO_USAGE, 0.0, "")
    hello = protocol.decode([b"LZ1", b"HELLO", msgpack.packb(
        {"name": "old", "slots": 1, "capabilities": ["code"], "protocol": 3})])
    assert isinstance(hello, protocol.Hello) and hello.accounts == []
    assign = protocol.decode([b"LZ1", b"ASSIGN", msgpack.packb({"job": protocol.to_plain(
        spec(id=JOB))})])
    assert isinstance(assign, protocol.Assign) and (assign.account, assign.resume) == ("", "")
    # this release's say everything; a protocol-1 peer is sent none of it
    usage = protocol.Usage(cost_usd=0.25, tokens_in=100, session_id="sess-1", model="m")
    new = [protocol.Done(job_id=JOB, attempt=1, exit_code=1, usage=usage,
                         limited_until=1.8e9, limit="usage limit reached"),
           protocol.Progress(job_id=JOB, attempt=1, usage=usage),
           protocol.Assign(job=spec(id=JOB), account="team-a", resume="sess-1"),
           protocol.Hello(name="a", slots=1, capabilities=["code"], accounts=["team-a"])]
    for msg in new:
        assert protocol.decode(protocol.encode(msg)) == msg
        sent = msgpack.unpackb(protocol.encode(msg, peer=1)[2])
        assert set(sent) <= message.V1_FIELDS[type(msg).__name__], msg
    assert protocol.PROTOCOL >= 4
