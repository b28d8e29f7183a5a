"""The job edges of lifecycle.py on a model without sockets: a real Store (SQLite in
memory), the real Scheduler and Fleet, and the Outbox read back as the broker would send it."""

from __future__ import annotations

import dataclasses

import pytest

from luzia import protocol
from luzia.broker import intake, lifecycle
from luzia.broker.fleet import Agent
from luzia.broker.job import Job
from luzia.broker.model import BrokerModel
from luzia.config import Config
from luzia.errors import IllegalTransition
from luzia.states import JobState
from tests.broker.harness import M, make_model, spec


@pytest.fixture
def m():
    cfg = Config()
    model = make_model(dataclasses.replace(cfg, broker=dataclasses.replace(cfg.broker, max_pending=2)))
    yield model
    model.store.close()


def submit(m: BrokerModel, **kw) -> Job:
    job = intake.accept(m, spec(**kw))
    assert job is not None
    return job


def stored(m: BrokerModel, job_id: str) -> Job:
    job = m.store.get(job_id)
    assert job is not None
    return job


def join(m, name="gpu1", slots=1) -> Agent:
    agent = Agent(name=name, identity=name.encode(), slots=slots,
                  capabilities=["code", "text", "reasoning"])
    m.fleet.join(agent)
    return agent


def dispatch(m) -> list[str]:
    """What the broker's dispatch does: assign every pick; the ids assigned."""
    picked = []
    while (p := m.sched.pick()) is not None:
        lifecycle.assign(m, m.jobs[p[0]], m.fleet.get(p[1]))
        picked.append(p[0])
    return picked


def sent(m, kind: type[M]) -> list[M]:
    msgs = [protocol.decode(frames[1:]) for frames in m.out.to_agents]
    return [msg for msg in msgs if isinstance(msg, kind)]


def topics(m) -> list[str]:
    return [topic for topic, _ in m.out.events]


def running(m, **kw):
    """A job assigned to gpu1 and started there."""
    job = submit(m, **kw)
    assert dispatch(m) == [job.id]
    lifecycle.start(m, job, "started on gpu1")
    return job


def test_a_rejection_goes_through_the_state_machine_and_is_kept(m):
    first, second = submit(m, user="a"), submit(m, user="b")
    refused = submit(m, user="c")
    assert refused.state is JobState.REJECTED and refused.reason.startswith("queue full")
    assert refused.finished_at is not None and refused.id not in m.jobs
    assert stored(m, refused.id).state is JobState.REJECTED
    assert topics(m) == ["job.pending", "job.pending", "job.rejected"]
    assert m.counters == {"submissions": 3, "duplicates": 0, "rejections": 1}
    assert intake.accept(m, spec(id=first.id)) is None      # a repeat is a no-op
    assert m.counters["duplicates"] == 1 and second.id in m.jobs


def test_an_illegal_edge_is_a_bug_that_raises(m):
    job = submit(m)
    with pytest.raises(IllegalTransition):
        lifecycle.start(m, job, "started without an Assign")


def test_each_edge_saves_publishes_and_sends_once(m):
    join(m)
    job = submit(m)
    m.out.events.clear()
    assert dispatch(m) == [job.id]
    assert topics(m) == ["job.assigned"]
    assert [a.job.id for a in sent(m, protocol.Assign)] == [job.id]
    assert stored(m, job.id).state is JobState.ASSIGNED
    assert m.store.attempts(job.id)[0]["host"] == "gpu1"
    lifecycle.start(m, job, "started on gpu1")
    lifecycle.end(m, job, 0, "")
    assert topics(m) == ["job.assigned", "job.running", "job.completed"]
    assert job.id not in m.jobs and stored(m, job.id).exit_code == 0
    assert m.fleet.get("gpu1").jobs == set() and m.sched.running_on("gpu1") == set()


def test_a_requeued_job_waits_with_no_trace_of_its_last_attempt_but_the_record(m):
    join(m)
    job = running(m)
    job.progress, job.message = 40.0, "halfway"
    lifecycle.lose(m, job, "agent gpu1 stopped beating")
    lifecycle.requeue(m, job, "agent gpu1 lost for 30s")
    assert job.state is JobState.PENDING and job.host == "" and job.attempt == 1
    assert (job.progress, job.message, job.exit_code, job.started_at) == (-1.0, "", None, None)
    record = m.store.attempts(job.id)[0]
    assert record["host"] == "gpu1" and record["started_at"] and record["finished_at"]
    assert record["reason"] == "agent gpu1 lost for 30s"
    assert m.sched.why(job.id)          # pending in the scheduler again


def test_a_failure_with_retries_left_frees_its_credit_at_once(m):
    join(m)
    job = running(m, max_retries=1)
    other = submit(m, user="bob")
    m.dirty = False
    lifecycle.end(m, job, 3, "")
    assert m.dirty and dispatch(m) == [other.id]        # the freed slot, this turn
    assert job.state is JobState.PENDING and job.reason == "retry 1/1 after exit 3"
    assert job.exit_code is None and job.finished_at is None
    assert m.store.attempts(job.id)[0]["exit_code"] == 3
    assert m.retry_at and m.retry_at[0][1] == job.id     # back in the queue after the backoff


def test_finishing_a_pending_job_keeps_the_record_of_its_last_attempt(m):
    join(m)
    job = running(m, max_retries=2)
    lifecycle.end(m, job, 3, "")                # pending, waiting out its backoff
    assert lifecycle.cancel(m, job) == "killed"
    record = m.store.attempts(job.id)[0]
    assert (record["host"], record["exit_code"], record["reason"]) == ("gpu1", 3, "exit 3")
    assert stored(m, job.id).state is JobState.KILLED


def test_a_preempted_job_goes_back_to_pending_without_using_a_retry(m):
    m.cfg = dataclasses.replace(m.cfg, scheduler=dataclasses.replace(
        m.cfg.scheduler, preempt=True, preempt_after=0.0, per_user=False))
    m.sched.cfg = m.cfg.scheduler
    join(m)
    low = running(m, priority=3)
    crit = submit(m, priority=0)
    lifecycle.preempt(m, now=1e9)
    assert [c.job_id for c in sent(m, protocol.Cancel)] == [low.id]
    assert low.reason == f"preempted by {crit.id}" and m.stopping == {low.id: crit.id}
    lifecycle.end(m, low, -15, "cancelled")
    assert low.state is JobState.PENDING and low.retries == 0 and not m.stopping
    assert m.store.attempts(low.id)[0]["exit_code"] == -15
    assert dispatch(m) == [crit.id]


def test_cancel_of_a_job_on_a_dead_agent_kills_it_here(m):
    agent = join(m)
    job = running(m)
    m.fleet.bury(agent, now=0.0)
    assert lifecycle.cancel(m, job) == "cancelling"
    assert job.state is JobState.KILLED and job.reason == "cancelled (agent unreachable)"
    assert not sent(m, protocol.Cancel)


def test_a_failed_dependency_fails_its_dependents_in_one_edge_each(m):
    join(m)
    first = running(m, user="a")
    second = submit(m, user="b", after=[first.id])
    third = submit(m, user="c", after=[second.id])
    lifecycle.end(m, first, 1, "")
    assert [stored(m, j.id).state for j in (first, second, third)] == [JobState.FAILED] * 3
    assert stored(m, third.id).reason == f"dependency {second.id} failed"
    assert not m.jobs


def test_a_turn_of_submissions_is_taken_as_each_would_be_alone(m):
    """accept_all (one query for known ids, one insert): duplicates within the batch and of
    stored jobs are no-ops, a dependency on a job of the same batch counts, the queue limit
    (2 here) applies in order, and the jobs keep their order."""
    done = submit(m, user="old")
    lifecycle.finish(m, done, JobState.KILLED, "cancelled")
    first = spec(user="u1")
    depends = spec(user="u2", after=[first.id])
    fails = spec(user="u3", after=[done.id])
    full = spec(user="u4")
    on_rejected = spec(user="u5", after=[full.id])
    fails_too = spec(user="u6", after=[fails.id])
    taken = intake.accept_all(m, [fails, fails_too, first, first, spec(id=done.id), depends,
                                     full, on_rejected])
    assert [j.id if j else None for j in taken] == [
        fails.id, fails_too.id, first.id, None, None, depends.id, full.id, on_rejected.id]
    assert m.counters["duplicates"] == 2
    assert stored(m, first.id).state is JobState.PENDING
    assert stored(m, depends.id).state is JobState.PENDING
    assert stored(m, fails.id).state is JobState.FAILED
    assert stored(m, fails.id).reason == f"dependency {done.id} killed"
    assert stored(m, full.id).state is JobState.REJECTED
    assert stored(m, full.id).reason.startswith("queue full (2 pending")
    assert stored(m, on_rejected.id).reason.startswith("queue full")
    assert stored(m, fails_too.id).reason == f"dependency {fails.id} failed"
    assert stored(m, done.id).state is JobState.KILLED      # the repeat changed nothing
    seqs = [stored(m, s.id).seq for s in (fails, fails_too, first, depends, full, on_rejected)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 6
    events = m.store.db.execute("SELECT COUNT(*) FROM events WHERE job_id=?", (first.id,))
    assert events.fetchone()[0] == 1


def test_a_turn_judges_each_submission_by_its_own_sender():
    """accept_all with a sender per submission: each job records its submitter, one naming
    a user not its sender's is rejected, an admin's is not, one from inside is not judged."""
    from luzia.identity import Submitter
    m = make_model()
    try:
        mine, theirs, admins, inside = (spec(user=u) for u in ("bob", "carol", "carol", "carol"))
        intake.accept_all(m, [mine, theirs, admins, inside], [
            Submitter("bob"), Submitter("bob"), Submitter("root", admin=True), None])
        assert [stored(m, s.id).submitter for s in (mine, theirs, admins, inside)] == [
            "bob", "bob", "root", None]
        assert stored(m, theirs.id).state is JobState.REJECTED
        assert "bob may not submit as 'carol'" in stored(m, theirs.id).reason
        assert [stored(m, s.id).state for s in (mine, admins, inside)] == [JobState.PENDING] * 3
    finally:
        m.store.close()


def test_a_job_waiting_for_a_rejected_job_of_its_own_turn_fails():
    m = make_model()
    try:
        bad = spec(after=["000000-0123456789ab"])          # unknown dependency: rejected
        waiting = spec(after=[bad.id])
        intake.accept_all(m, [bad, waiting])
        assert stored(m, bad.id).state is JobState.REJECTED
        assert stored(m, waiting.id).state is JobState.FAILED
        assert stored(m, waiting.id).reason == f"dependency {bad.id} rejected"
        assert intake.accept(m, spec(after=[spec().id])) is not None    # unknown: rejected
    finally:
        m.store.close()


def test_the_retry_backoff_doubles_from_retry_initial_up_to_retry_max(m):
    assert [lifecycle.backoff(m, n) for n in range(4)] == [1.0, 2.0, 4.0, 8.0]   # the defaults
    assert lifecycle.backoff(m, 20) == 300.0
    cfg = dataclasses.replace(m.cfg, broker=dataclasses.replace(m.cfg.broker, retry_initial=0.25,
                                                                 retry_max=1.0))
    fast = make_model(cfg)
    try:
        assert [lifecycle.backoff(fast, n) for n in range(4)] == [0.25, 0.5, 1.0, 1.0]
    finally:
        fast.store.close()
