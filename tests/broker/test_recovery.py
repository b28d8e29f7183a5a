"""Recovery, stepped turn by turn: what the agents' Hellos reconcile after a broker restart,
what the attempts table records of a lost agent, a retried lost job, a CLI's leftovers."""

from __future__ import annotations

import pytest
import zmq

from luzia import protocol
from luzia.states import JobState
from tests.broker.harness import DIES_FAST, FakeAgent, Peer, beating, job_state, make_broker, pump, spec


@pytest.fixture
def made(home):
    home.mkdir()
    return home


def _running_job(b, ctx, name: str, user: str = "alice", others=()) -> tuple[FakeAgent, str]:
    agent = FakeAgent(ctx, b, name=name, slots=1)
    s = spec(user=user)
    push = Peer(ctx, zmq.PUSH, b.cfg.endpoints.submit)   # kept open until the Assign
    push.send(protocol.Submit(job=s))
    agent.recv(b, protocol.Assign)
    push.close()
    agent.send(protocol.Started(job_id=s.id, attempt=1))
    pump(b, beating([agent, *others], lambda: b.model.jobs[s.id].state is JobState.RUNNING))
    return agent, s.id


def test_broker_restart_keeps_what_the_hellos_hold_and_requeues_the_rest(made, ctx):
    patient = "[scheduler]\nmax_per_project = 0"
    b = make_broker(made, patient)
    kept_by, kept = _running_job(b, ctx, "keeper", "alice")
    lost_by, lost = _running_job(b, ctx, "forgetter", "bob", [kept_by])
    _, silent = _running_job(b, ctx, "silent", "carol", [kept_by, lost_by])
    b.close()
    for agent in (kept_by, lost_by):
        agent.close()
    b = make_broker(made, patient)
    try:
        # the restored jobs still hold their credits until their agents say Hello
        assert {b.model.jobs[i].state for i in (kept, lost, silent)} == {JobState.RUNNING}
        back = FakeAgent(ctx, b, name="keeper", slots=1,
                         held=[protocol.HeldJob(job_id=kept, attempt=1)])
        assert back.welcome.adopt == [kept]
        forgetter = FakeAgent(ctx, b, name="forgetter", slots=1)   # back, holding nothing
        pump(b, beating([back, forgetter], lambda: b.model.jobs[lost].attempt == 2))
        assert b.model.jobs[kept].state is JobState.RUNNING and b.model.jobs[kept].attempt == 1
        # the agent that never says Hello: its job is requeued after lost_grace, not left running
        pump(b, beating([back, forgetter], lambda: b.model.jobs[silent].host != "silent"), timeout=10)
        attempts = b.model.store.attempts(silent)
        assert attempts[0]["host"] == "silent" and attempts[0]["finished_at"]
        assert "lost" in attempts[0]["reason"]
    finally:
        b.close()


def test_a_lost_agents_attempt_is_recorded_with_its_end_and_reason(made, ctx):
    b = make_broker(made, liveness=DIES_FAST)
    try:
        dead, job_id = _running_job(b, ctx, "dead")
        dead.beating = False
        live = FakeAgent(ctx, b, name="live", slots=1)
        live.recv(b, protocol.Assign, timeout=10)
        live.finish(job_id, attempt=2)
        pump(b, lambda: job_state(b, job_id) is JobState.COMPLETED)
        first, second = b.model.store.attempts(job_id)
        assert (first["attempt"], first["host"]) == (1, "dead")
        assert first["started_at"] and first["finished_at"] and "lost" in first["reason"]
        assert (second["attempt"], second["host"], second["exit_code"]) == (2, "live", 0)
    finally:
        b.close()


def test_retry_of_a_lost_job_requeues_it_at_once_without_waiting_for_the_grace(made, ctx):
    from tests.broker.harness import Client
    b = make_broker(made, liveness=DIES_FAST, lost_grace=60)   # the retry, not the grace, requeues it
    try:
        dead, job_id = _running_job(b, ctx, "dead")
        dead.beating = False
        pump(b, lambda: b.model.jobs[job_id].state is JobState.LOST)
        reply = Client(ctx, b).call(b, "jobs.retry", ids=[job_id])
        assert reply.ok and reply.result == [{"id": job_id, "state": "pending", "result": "retrying"}]
        live = FakeAgent(ctx, b, name="live", slots=1)
        assign = live.recv(b, protocol.Assign)
        assert (assign.job.id, assign.attempt) == (job_id, 2)
        assert "retry requested" in b.model.store.attempts(job_id)[0]["reason"]
    finally:
        b.close()


def test_a_killed_clis_half_written_spool_file_is_ignored_then_removed_when_stale(made):
    import os
    import time
    b = make_broker(made)
    try:
        fresh, stale = b.spool.path / ".010203-0123456789ab.tmp", b.spool.path / ".010204-0123456789ab.tmp"
        for path in (fresh, stale):
            path.write_bytes(b"\x85half")
        old = time.time() - 3600
        os.utime(stale, (old, old))
        pump(b, lambda: not stale.exists())
        assert fresh.exists() and not (b.spool.bad.exists() and any(b.spool.bad.iterdir()))
        assert b.model.store.counts() == {}
    finally:
        b.close()
