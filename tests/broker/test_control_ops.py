"""Operator ops on the broker's model (no sockets): the advice of agents.allocate, the
agents' health and load level, forgetting an agent, argument checks, the accounting of an
empty store, and every op's documentation."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from luzia.broker import accounting, intake, lifecycle, ops
from luzia.broker.fleet import Agent
from luzia.broker.job import Job
from luzia.broker.ops.request import Args
from luzia.errors import BadRequest, NotFound, Refused
from luzia.states import JobState
from tests.broker.harness import make_model, spec


@pytest.fixture
def m():
    model = make_model()
    yield model
    model.store.close()


def op(m, op_name: str, **args):
    return ops.OPS[op_name](m, Args(args))


def test_sustained_growth_and_waiting_types_are_recommended(m):
    for _ in range(12):
        intake.accept(m, spec(type="reasoning"))
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
    assert op(m, "stats") == {"by_user": [], "by_submitter": [], "by_project": [], "by_agent": [],
                              "total": {
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


def accept(m, **kw) -> Job:
    job = intake.accept(m, spec(**kw))
    assert job is not None
    return job


def join(m, name: str, slots: int = 2, caps=("code",), cpu: float = 0.1) -> Agent:
    agent = Agent(name=name, identity=name.encode(), slots=slots, capabilities=list(caps),
                  last_seen=time.monotonic(), cpu=cpu)
    m.fleet.join(agent)
    m.fleet.load(agent)
    return agent


def place(m) -> str:
    """The scheduler's next pick, assigned as the broker would."""
    picked = m.sched.pick()
    assert picked is not None
    agent = m.fleet.get(picked[1])
    assert agent is not None
    lifecycle.assign(m, m.jobs[picked[0]], agent)
    return picked[0]


def test_a_type_no_agent_offers_is_listed_and_an_agent_recommended_for_it(m):
    join(m, "gpu1")
    join(m, "gpu2", cpu=0.5)
    accept(m, type="gpux")
    advice = op(m, "agents.allocate")
    assert {"type": "gpux", "agent": None, "load": None, "why": "no agent offers it"} \
        in advice["placements"]
    assert ("add capacity for 'gpux': 1 jobs wait and no agent offers it; add 'gpux' to the "
            "capabilities of gpu1 (the least loaded live agent: agent.capabilities on its "
            "host), or start an agent that offers it") in advice["recommendations"]


def test_no_scale_up_when_the_jobs_wait_only_on_their_own_users_lock(m):
    join(m, "gpu1", slots=4)
    for _ in range(12):
        accept(m, user="alice")
    place(m)
    m.store.commit()
    recs = op(m, "agents.allocate")["recommendations"]
    assert not any(r.startswith(("scale up", "add capacity")) for r in recs), recs
    assert any(r.startswith("no scale-up: the queue grew by 12") and "own user's lock" in r
               for r in recs), recs
    accept(m, user="bob")         # bob's job would start on more capacity...
    m.fleet.get("gpu1").slots = 1                 # ...once gpu1 is full
    m.fleet.set_slots(m.fleet.get("gpu1"), 1)
    m.store.commit()
    recs = op(m, "agents.allocate")["recommendations"]
    assert any(r.startswith("scale up: the queue grew by 13") and r.endswith(
        "1 of them would start on more capacity") for r in recs), recs


def test_health_and_load_level_of_a_busy_a_dead_and_a_gone_agent(m):
    busy = join(m, "busy", cpu=0.95)
    calm = join(m, "calm", slots=1)
    by_name = {a["name"]: a for a in op(m, "agents.status")}
    assert by_name["busy"]["health"] == "busy" and by_name["busy"]["load_level"] == "moderate"
    assert by_name["calm"]["health"] == "ok" and by_name["calm"]["load_level"] == "low"
    accept(m, user="a")
    accept(m, user="b")
    place(m)
    place(m)
    by_name = {a["name"]: a for a in op(m, "agents.status")}
    assert by_name["busy"]["health"] == "over-ceiling" and by_name["calm"]["health"] == "full"
    assert by_name["calm"]["load_level"] == "low"     # 0.25 for its slot, 0.04 for cpu
    recs = op(m, "agents.allocate")["recommendations"]
    assert any(r.startswith("busy is over its cpu ceiling (95 % > 80 %): it runs 1") for r in recs)
    now = time.monotonic()
    for agent in (busy, calm):
        for job_id in sorted(agent.jobs):
            lifecycle.finish(m, m.jobs[job_id], JobState.KILLED, "cancelled")
        m.fleet.bury(agent, now - (m.cfg.broker.gone_after + 1 if agent is busy else 5))
    by_name = {a["name"]: a for a in op(m, "agents.status")}
    assert by_name["busy"]["health"] == "gone" and by_name["calm"]["health"] == "dead"
    assert by_name["busy"]["dead_for"] > m.cfg.broker.gone_after
    assert [lifecycle_level(s) for s in (0.0, 0.3, 0.59, 0.6, 0.8, 1.0)] == \
        ["low", "moderate", "moderate", "high", "critical", "critical"]


def lifecycle_level(score: float) -> str:
    from luzia.broker.ops.agents import load_level
    return load_level(score)


def test_forget_only_a_dead_agent_holding_no_job(m):
    gpu1 = join(m, "gpu1")
    with pytest.raises(Refused, match="agent gpu1 is live"):
        op(m, "agents.forget", name="gpu1")
    op(m, "agents.drain", name="gpu1")
    accept(m)
    m.fleet.drain(gpu1, False)
    job_id = place(m)
    m.fleet.drain(gpu1, True)
    m.fleet.bury(gpu1, time.monotonic())
    with pytest.raises(Refused, match=f"agent gpu1 holds 1 jobs \\({job_id}\\)"):
        op(m, "agents.forget", name="gpu1")
    lifecycle.requeue(m, m.jobs[job_id], "agent gpu1 lost for 30s")
    assert op(m, "agents.forget", name="gpu1", dry_run=True)["name"] == "gpu1"
    assert m.fleet.get("gpu1") is not None            # a dry run changes nothing
    assert op(m, "agents.forget", name="gpu1")["health"] == "dead"
    assert m.fleet.get("gpu1") is None and "gpu1" not in m.fleet.drained
    assert m.store.drained() == set() and op(m, "agents.status") == []
    assert ("agent.forgotten", {"name": "gpu1"}) in m.out.events
    assert m.jobs[job_id].state is JobState.PENDING   # the scheduler forgot it too:
    assert m.sched.why(job_id) == "no live agent offers 'code'"
    with pytest.raises(NotFound, match="no agent 'gpu1'"):
        op(m, "agents.forget", name="gpu1")


def test_drain_and_undrain_dry_run_change_nothing(m):
    join(m, "gpu1")
    assert op(m, "agents.drain", name="gpu1", dry_run=True)["draining"] is False
    assert not m.fleet.get("gpu1").draining and m.store.drained() == set()


def test_jobs_get_says_where_each_attempt_came_from(m):
    """An automatic retry, an operator's retry and a requeue each count as what they are;
    an end reads `exit 1` whether retries are left or not."""
    gpu1 = join(m, "gpu1")
    job = accept(m, max_retries=1)
    place(m)
    lifecycle.start(m, job, "started on gpu1 session=luzia-x pid=1")
    lifecycle.end(m, job, 1, "")
    assert job.reason == "retry 1/1 after exit 1"
    assert op(m, "jobs.get", id=job.id)["causes"] == {
        "automatic": 0, "manual": 0, "requeued": 0, "requeued_why": "", "next": "automatic"}
    lifecycle.enqueue(m, job)                       # its backoff is over
    place(m)
    lifecycle.end(m, job, 1, "")
    assert (job.state, job.reason) == (JobState.FAILED, "exit 1")
    assert op(m, "jobs.retry", ids=[job.id], dry_run=True) == [
        {"id": job.id, "state": "failed", "result": "would retry as attempt 3"}]
    assert job.state is JobState.FAILED              # the dry run left it
    op(m, "jobs.retry", ids=[job.id])
    job = m.jobs[job.id]                            # read back from the store
    place(m)
    m.fleet.bury(gpu1, time.monotonic())
    lifecycle.requeue(m, job, "agent gpu1 lost for 30s")
    got = op(m, "jobs.get", id=job.id)
    assert got["causes"] == {"automatic": 1, "manual": 1, "requeued": 0,
                             "requeued_why": "agent gpu1 lost for 30s", "next": "requeued"}
    assert got["attempt"] == 3 and [a["reason"] for a in got["attempts"]] == [
        "exit 1", "exit 1", "agent gpu1 lost for 30s"]


def test_cancel_dry_run_says_what_it_would_do(m):
    join(m, "gpu1")
    running, pending = accept(m, user="a"), accept(m, user="a")
    place(m)
    assert op(m, "jobs.cancel", ids=[running.id, pending.id], dry_run=True) == [
        {"id": running.id, "state": "assigned", "result": "would cancel: its agent gpu1 stops it"},
        {"id": pending.id, "state": "pending", "result": "would kill"}]
    assert not m.out.to_agents[1:] and pending.state is JobState.PENDING


def test_the_session_its_agent_named_survives_a_broker_restart(m):
    join(m, "gpu1")
    job = accept(m)
    place(m)
    job.session = "luzia-gpu1-slot-0"
    lifecycle.start(m, job, "started on gpu1 session=luzia-gpu1-slot-0 pid=42")
    assert op(m, "jobs.get", id=job.id)["session"] == "luzia-gpu1-slot-0"
    m.store.commit()
    finished = m.store.get(job.id)
    assert finished is not None and finished.session == ""    # not a column...
    m.jobs.pop(job.id)
    assert op(m, "jobs.get", id=job.id)["session"] == "luzia-gpu1-slot-0"   # ...but its event
    m.jobs[job.id] = job
    again = make_model(m.cfg)
    again.store = m.store                       # a new broker on the same database
    restored = m.store.get(job.id)
    lifecycle.restore(again, restored)
    assert restored.session == "luzia-gpu1-slot-0"


def test_queue_locks_show_each_lock_its_job_host_since_and_when_it_goes_stale(m):
    join(m, "gpu1", slots=3)
    join(m, "gpu2", slots=3)
    first = accept(m, user="alice", project="p1")
    accept(m, user="alice", project="p1")
    bob = accept(m, user="bob", project="p2")
    place(m)
    place(m)
    locks = op(m, "queue.locks")
    assert (locks["per_user"], locks["stale_after"]) == (True, 3600.0)
    rows = {r["user"]: r for r in locks["locks"]}
    assert set(rows) == {"alice", "bob"}
    alice = rows["alice"]
    assert (alice["job"], alice["state"], alice["limit"], alice["waiting"]) == (first.id, "held", 1, 1)
    assert alice["host"] in ("gpu1", "gpu2") and alice["project"] == "p1"
    assert alice["stale_at"] == pytest.approx((first.assigned_at or 0) + 3600.0)
    assert rows["bob"]["job"] == bob.id and rows["bob"]["waiting"] == 0
    m.sched.expire(time.monotonic() + 3601)          # an hour on: alice's lock is stale
    rows = {r["user"]: r for r in op(m, "queue.locks")["locks"]}
    assert rows["alice"]["state"] == "stale"
    m.fleet.bury(m.fleet.get(rows["bob"]["host"]), time.monotonic())
    assert {r["user"]: r for r in op(m, "queue.locks")["locks"]}["bob"]["state"] == "released"


def test_stats_by_agent_count_each_attempt_where_it_ran(m):
    join(m, "gpu1")
    done = accept(m, user="a")
    failed = accept(m, user="b", max_retries=1)
    place(m)
    place(m)
    for job in (done, failed):
        lifecycle.start(m, job, "started")
    lifecycle.end(m, done, 0, "")
    lifecycle.end(m, failed, 1, "")                 # retried: a second attempt
    lifecycle.enqueue(m, failed)
    place(m)
    lifecycle.end(m, failed, 1, "")
    m.store.commit()
    (row,) = op(m, "stats")["by_agent"]
    assert {k: v for k, v in row.items() if k not in ("run_seconds", "mean_run")} == {
        "name": "gpu1", "jobs": 2, "attempts": 3, "completed": 1, "failed": 2,
        "cost_usd": 0, "tokens_in": 0, "tokens_out": 0, "cache_read": 0, "cache_write": 0}
    assert op(m, "stats", user="a")["by_agent"][0]["attempts"] == 1


def test_a_type_nobody_offers_is_advised_even_while_its_user_is_busy(m):
    join(m, "gpu1", slots=4)
    accept(m, user="bob")
    place(m)                                          # bob's lock is held...
    accept(m, user="bob", type="gpux")                # ...and his gpux job could never run
    recs = op(m, "agents.allocate")["recommendations"]
    assert any(r.startswith("add capacity for 'gpux': 1 jobs wait and no agent offers it; add "
                            "'gpux' to the capabilities of gpu1") for r in recs), recs
