"""The broker with real sockets, stepped turn by turn from the test."""

from __future__ import annotations

import time

import msgpack
import pytest
import zmq

from luzia import protocol
from luzia.states import JobState
from tests.broker.harness import (
    DIES_FAST,
    Client,
    FakeAgent,
    Peer,
    beating,
    job_state,
    make_broker,
    pump,
    spec,
)


def test_submission_is_committed_and_its_spool_file_removed(broker, ctx):
    s = spec()
    path = broker.spool.path_for(s.id)
    path.write_bytes(protocol.spool_bytes(protocol.Submit(job=s)))
    push = Peer(ctx, zmq.PUSH, broker.cfg.endpoints.submit)
    push.send(protocol.Submit(job=s))
    pump(broker, lambda: job_state(broker, s.id) is JobState.PENDING and not path.exists())
    assert broker.model.counters["submissions"] == 1


def test_spool_sweep_takes_jobs_whose_push_was_lost(broker):
    s = spec()
    broker.spool.path_for(s.id).write_bytes(protocol.spool_bytes(protocol.Submit(job=s)))
    pump(broker, lambda: job_state(broker, s.id) is JobState.PENDING)
    pump(broker, lambda: not broker.spool.path_for(s.id).exists())


def test_corrupt_spool_file_is_moved_aside_and_others_still_taken(broker):
    good = spec()
    broker.spool.path_for(good.id).write_bytes(protocol.spool_bytes(protocol.Submit(job=good)))
    (broker.spool.path / "000000-0123456789ab.job").write_bytes(b"\x00garbage")
    pump(broker, lambda: job_state(broker, good.id) is JobState.PENDING)
    pump(broker, lambda: broker.spool.bad.exists() and any(broker.spool.bad.iterdir()))


def test_duplicate_submission_is_a_no_op(broker, ctx):
    s = spec()
    push = Peer(ctx, zmq.PUSH, broker.cfg.endpoints.submit)
    for _ in range(3):
        push.send(protocol.Submit(job=s))
    pump(broker, lambda: broker.model.counters["duplicates"] == 2)
    assert broker.model.store.counts() == {"pending": 1}


def test_job_runs_on_an_agent_through_its_states(broker, ctx):
    agent = FakeAgent(ctx, broker)
    push = Peer(ctx, zmq.PUSH, broker.cfg.endpoints.submit)
    s = spec()
    push.send(protocol.Submit(job=s))
    assign = agent.recv(broker, protocol.Assign)
    assert assign.job.id == s.id and assign.attempt == 1
    assert job_state(broker, s.id) is JobState.ASSIGNED
    agent.send(protocol.Started(job_id=s.id, attempt=1, session=f"luzia-{s.id}"))
    agent.send(protocol.Progress(job_id=s.id, attempt=1, percent=40, message="thinking",
                                 tail=["line 1"]))
    pump(broker, lambda: broker.model.jobs[s.id].progress == 40)
    assert job_state(broker, s.id) is JobState.RUNNING
    agent.send(protocol.Done(job_id=s.id, attempt=1, exit_code=0, tail=["done"]))
    pump(broker, lambda: job_state(broker, s.id) is JobState.COMPLETED)
    job = broker.model.store.get(s.id)
    assert job.exit_code == 0 and job.host == "gpu1" and job.tail == ["done"]


def test_credits_are_never_exceeded_and_priority_decides_who_gets_the_free_slot(broker, ctx):
    agent = FakeAgent(ctx, broker, slots=1)
    push = Peer(ctx, zmq.PUSH, broker.cfg.endpoints.submit)
    first = spec(user="u0")
    push.send(protocol.Submit(job=first))
    agent.recv(broker, protocol.Assign)
    low = [spec(user=f"l{i}", priority=3) for i in range(3)]
    crit = spec(user="c", priority=0)
    for s in low:
        push.send(protocol.Submit(job=s))
    pump(broker, lambda: broker.model.sched.pending_count() == 3)
    push.send(protocol.Submit(job=crit))
    pump(broker, lambda: broker.model.sched.pending_count() == 4)
    assert not [m for m in agent.drain() if isinstance(m, protocol.Assign)]
    agent.finish(first.id)
    nxt = agent.recv(broker, protocol.Assign)
    assert nxt.job.id == crit.id
    agent.finish(crit.id)
    assert agent.recv(broker, protocol.Assign).job.id == low[0].id


@pytest.fixture
def mortal(home):
    """A broker whose agents are dead after 3 missed beats (0.15 s)."""
    home.mkdir()
    b = make_broker(home, liveness=DIES_FAST)
    yield b
    b.close()


def test_dead_agent_gets_no_work_and_its_jobs_are_requeued_after_the_grace(mortal, ctx):
    broker = mortal
    dead = FakeAgent(ctx, broker, name="dead", slots=1)
    push = Peer(ctx, zmq.PUSH, broker.cfg.endpoints.submit)
    s = spec()
    push.send(protocol.Submit(job=s))
    dead.recv(broker, protocol.Assign)
    dead.send(protocol.Started(job_id=s.id, attempt=1))
    dead.beating = False
    # it never beats again: after 3 intervals it is dead and the job lost
    pump(broker, lambda: job_state(broker, s.id) is JobState.LOST)
    other = spec(user="bob")
    push.send(protocol.Submit(job=other))
    live = FakeAgent(ctx, broker, name="live", slots=2)
    got = {live.recv(broker, protocol.Assign).job.id, live.recv(broker, protocol.Assign).job.id}
    assert got == {s.id, other.id}      # the lost job came to the live agent after the grace
    assert broker.model.jobs[s.id].attempt == 2


def test_agent_that_comes_back_in_time_keeps_its_job(home, ctx):
    home.mkdir()
    # dead at once when it stops beating; back well within the grace, however slow the box
    broker = make_broker(home, liveness=DIES_FAST, lost_grace=60)
    try:
        _comes_back(broker, ctx)
    finally:
        broker.close()


def _comes_back(broker, ctx):
    agent = FakeAgent(ctx, broker, name="flaky", slots=1)
    push = Peer(ctx, zmq.PUSH, broker.cfg.endpoints.submit)
    s = spec()
    push.send(protocol.Submit(job=s))
    agent.recv(broker, protocol.Assign)
    agent.send(protocol.Started(job_id=s.id, attempt=1))
    agent.beating = False
    pump(broker, lambda: job_state(broker, s.id) is JobState.LOST)
    agent.close()
    back = FakeAgent(ctx, broker, name="flaky", slots=1,
                     held=[protocol.HeldJob(job_id=s.id, attempt=1)])
    assert back.welcome.adopt == [s.id]
    assert job_state(broker, s.id) is JobState.RUNNING
    back.send(protocol.Done(job_id=s.id, attempt=1, exit_code=0))
    pump(broker, lambda: job_state(broker, s.id) is JobState.COMPLETED)
    assert broker.model.store.get(s.id).attempt == 1     # no second run


def test_a_hello_that_holds_an_ended_job_twice_ends_it_once(broker, ctx):
    agent = FakeAgent(ctx, broker, name="twice", slots=1)
    push = Peer(ctx, zmq.PUSH, broker.cfg.endpoints.submit)
    s = spec(max_retries=1)
    push.send(protocol.Submit(job=s))
    agent.recv(broker, protocol.Assign)
    agent.close()
    held = protocol.HeldJob(job_id=s.id, attempt=1, exit_code=3)
    back = FakeAgent(ctx, broker, name="twice", slots=1, held=[held, held])
    assert back.welcome.adopt == [s.id]
    job = broker.model.jobs[s.id]
    assert job.state is JobState.PENDING and job.retries == 1     # one failure, not two
    assert Client(ctx, broker).call(broker, "ping").ok


def test_a_stale_second_hello_does_not_requeue_an_assign_on_its_way(broker, ctx):
    """A Hello the agent sent before it read an Assign (e.g. asked for by a Disconnect that
    was queued while the broker restarted) lists no job: the Assign is still on its way on
    the same connection and will run, so requeueing it would run the job twice."""
    agent = FakeAgent(ctx, broker, name="again", slots=1)
    push = Peer(ctx, zmq.PUSH, broker.cfg.endpoints.submit)
    s = spec()
    push.send(protocol.Submit(job=s))
    agent.recv(broker, protocol.Assign)
    agent.send(protocol.Hello(name="again", slots=1, capabilities=["code", "text", "reasoning"]))
    agent.recv(broker, protocol.Welcome)
    job = broker.model.jobs[s.id]
    assert job.state is JobState.ASSIGNED and job.attempt == 1 and job.host == "again"
    agent.finish(s.id, attempt=1)
    pump(broker, lambda: job_state(broker, s.id) is JobState.COMPLETED)
    assert len(broker.model.store.attempts(s.id)) == 1       # ran once


def test_failed_job_is_retried_then_fails(broker, ctx):
    agent = FakeAgent(ctx, broker, slots=1)
    push = Peer(ctx, zmq.PUSH, broker.cfg.endpoints.submit)
    s = spec(max_retries=1)
    push.send(protocol.Submit(job=s))
    agent.recv(broker, protocol.Assign)
    agent.finish(s.id, attempt=1, exit_code=3)
    again = agent.recv(broker, protocol.Assign)
    assert again.attempt == 2
    agent.finish(s.id, attempt=2, exit_code=3)
    pump(broker, lambda: job_state(broker, s.id) is JobState.FAILED)
    assert len(broker.model.store.attempts(s.id)) == 2


def test_dependency_waits_and_failed_dependency_fails_the_job(broker, ctx):
    agent = FakeAgent(ctx, broker, slots=2)
    push = Peer(ctx, zmq.PUSH, broker.cfg.endpoints.submit)
    first, second = spec(user="a"), None
    push.send(protocol.Submit(job=first))
    agent.recv(broker, protocol.Assign)
    second = spec(user="b", after=[first.id])
    push.send(protocol.Submit(job=second))
    pump(broker, lambda: second.id in broker.model.jobs)
    assert "waiting" in broker.model.sched.why(second.id)
    agent.finish(first.id, exit_code=1)
    pump(broker, lambda: job_state(broker, second.id) is JobState.FAILED)
    assert first.id in broker.model.store.get(second.id).reason


def test_control_queries(broker, ctx):
    push = Peer(ctx, zmq.PUSH, broker.cfg.endpoints.submit)
    s = spec(task="list me")
    push.send(protocol.Submit(job=s))
    pump(broker, lambda: s.id in broker.model.jobs)
    client = Client(ctx, broker)
    assert client.call(broker, "ping").result["name"] == "broker"
    listed = client.call(broker, "jobs.list").result
    assert [j["id"] for j in listed] == [s.id]
    assert listed[0]["why"]                      # pending: it says why
    got = client.call(broker, "jobs.get", id=s.id[:10]).result
    assert got["task"] == "list me" and got["state"] == "pending" and "tail" in got
    assert client.call(broker, "jobs.get", id="999999-ffff").code == "not_found"
    assert client.call(broker, "nope").code == "bad_request"
    assert client.call(broker, "jobs.list", limit="x").code == "bad_request"
    status = client.call(broker, "status").result
    assert status["queue"]["pending"] == 1
    cancelled = client.call(broker, "jobs.cancel", ids=[s.id]).result
    assert cancelled[0]["result"] == "killed"
    assert job_state(broker, s.id) is JobState.KILLED


def test_logs_come_from_the_agent(broker, ctx):
    agent = FakeAgent(ctx, broker)
    push = Peer(ctx, zmq.PUSH, broker.cfg.endpoints.submit)
    s = spec()
    push.send(protocol.Submit(job=s))
    agent.recv(broker, protocol.Assign)
    client = Client(ctx, broker)
    client.n += 1
    client.send(protocol.Request(req=client.n, op="logs.read", args={"id": s.id}))
    req = agent.recv(broker, protocol.LogRequest)
    agent.send(protocol.LogChunk(req=req.req, job_id=s.id, offset=0, data=b"hello\n", size=6))
    reply = client.recv(broker, protocol.Reply)
    assert reply.ok and reply.result["data"] == b"hello\n" and reply.result["source"] == "agent"


BAD_FRAMES = [
    [b"garbage"],
    [b"LZ1", b"SUBMIT", b"\xc1\xc1"],
    [b"LZ1", b"NOPE", msgpack.packb({})],
    [b"LZ2", b"SUBMIT", msgpack.packb({})],
    [b"LZ1", b"SUBMIT", msgpack.packb({"job": {"id": 5}})],
    [b"LZ1", b"SUBMIT", msgpack.packb({"job": "x" * 10})],
    [b"LZ1", b"HELLO", msgpack.packb({"name": "x", "slots": -1, "capabilities": []})],
    [b"LZ1", b"REQUEST", msgpack.packb({"req": 1, "op": "jobs.get", "args": {"id": 7}})],
    [b"LZ1", b"SUBMIT", b"\x92" * 100000],
]


@pytest.mark.parametrize("endpoint", ["submit", "agents", "control"])
def test_bad_frames_are_counted_and_dropped_and_the_broker_carries_on(broker, ctx, endpoint):
    kind = zmq.PUSH if endpoint == "submit" else zmq.DEALER
    peer = Peer(ctx, kind, getattr(broker.cfg.endpoints, endpoint))
    for frames in BAD_FRAMES:
        peer.send_raw(frames)
    # oversized: zmq drops the connection; the broker must not notice beyond that
    big = Peer(ctx, kind, getattr(broker.cfg.endpoints, endpoint))
    big.send_raw([b"LZ1", b"SUBMIT", b"x" * (broker.cfg.broker.max_msg_size + 10)])
    pump(broker, lambda: sum(bad.count for bad in broker.model.bad.values()) >= len(BAD_FRAMES) - 1)
    # still serving: a normal submission and a normal query work
    good = spec()
    push = Peer(ctx, zmq.PUSH, broker.cfg.endpoints.submit)
    push.send(protocol.Submit(job=good))
    pump(broker, lambda: good.id in broker.model.jobs)
    assert Client(ctx, broker).call(broker, "ping").ok


def test_jobs_survive_a_broker_restart(home, ctx):
    home.mkdir()
    b = make_broker(home)
    s = spec()
    push = Peer(ctx, zmq.PUSH, b.cfg.endpoints.submit)
    push.send(protocol.Submit(job=s))
    pump(b, lambda: s.id in b.model.jobs)
    b.close()
    b2 = make_broker(home)
    try:
        assert b2.model.jobs[s.id].state is JobState.PENDING
        agent = FakeAgent(ctx, b2)
        assert agent.recv(b2, protocol.Assign).job.id == s.id
    finally:
        b2.close()


def test_second_broker_on_the_same_state_dir_is_refused(broker, home):
    from luzia.errors import LuziaError
    with pytest.raises(LuziaError, match="another broker"):
        make_broker(home)


def test_backpressure_rejects_with_a_reason(home, ctx):
    home.mkdir()
    b = make_broker(home, "max_pending = 2")
    try:
        push = Peer(ctx, zmq.PUSH, b.cfg.endpoints.submit)
        specs = [spec(user=f"u{i}") for i in range(3)]
        for s in specs:
            push.send(protocol.Submit(job=s))
        pump(b, lambda: b.model.counters["rejections"] == 1)
        rejected = b.model.store.get(specs[2].id)
        assert rejected is not None and rejected.state is JobState.REJECTED
        assert "queue full" in rejected.reason
    finally:
        b.close()


def test_preemption_sends_one_cancel_and_a_users_cancel_wins(home, ctx):
    home.mkdir()
    # the harness's patient liveness: the agent does not beat while the test's control call
    # pumps the broker
    b = make_broker(home, "[scheduler]\npreempt = true\npreempt_after = 0.1\nper_user = false")
    try:
        agent = FakeAgent(ctx, b, slots=1)
        push = Peer(ctx, zmq.PUSH, b.cfg.endpoints.submit)
        low, crit = spec(priority=3), spec(priority=0)
        push.send(protocol.Submit(job=low))
        agent.recv(b, protocol.Assign)
        agent.send(protocol.Started(job_id=low.id, attempt=1))
        push.send(protocol.Submit(job=crit))
        stop = agent.recv(b, protocol.Cancel)
        assert stop.job_id == low.id and stop.reason == f"preempted by {crit.id}"
        until = time.monotonic() + 0.4       # several broker beats, each checking preemption
        pump(b, beating([agent], lambda: time.monotonic() > until))
        assert not [m for m in agent.drain() if isinstance(m, protocol.Cancel)]
        assert Client(ctx, b).call(b, "jobs.cancel", ids=[low.id]).ok
        agent.holding.discard(low.id)
        agent.send(protocol.Done(job_id=low.id, attempt=1, exit_code=-15, reason="cancelled"))
        pump(b, beating([agent], lambda: job_state(b, low.id) is JobState.KILLED))
        assert agent.recv(b, protocol.Assign).job.id == crit.id
    finally:
        b.close()


def test_a_stale_user_lock_lets_the_users_next_job_start(home, ctx):
    home.mkdir()
    b = make_broker(home, "[scheduler]\nuser_lock_stale = 0.3")
    try:
        agent = FakeAgent(ctx, b, slots=2)
        push = Peer(ctx, zmq.PUSH, b.cfg.endpoints.submit)
        first, second = spec(project="p1"), spec(project="p2")
        push.send(protocol.Submit(job=first))
        assert agent.recv(b, protocol.Assign).job.id == first.id
        push.send(protocol.Submit(job=second))
        pump(b, lambda: second.id in b.model.jobs)
        assert b.model.sched.why(second.id) == f"user alice is running {first.id}"
        assert agent.recv(b, protocol.Assign).job.id == second.id    # after 0.3 s
        assert job_state(b, first.id) in (JobState.ASSIGNED, JobState.RUNNING)
    finally:
        b.close()


def test_a_preemption_under_way_survives_a_broker_restart(home, ctx):
    home.mkdir()
    conf = "[scheduler]\npreempt = true\npreempt_after = 0.1\nper_user = false"
    b = make_broker(home, conf)
    low, crit = spec(priority=3), spec(priority=0)
    try:
        agent = FakeAgent(ctx, b, slots=1)
        push = Peer(ctx, zmq.PUSH, b.cfg.endpoints.submit)
        push.send(protocol.Submit(job=low))
        agent.recv(b, protocol.Assign)
        agent.send(protocol.Started(job_id=low.id, attempt=1))
        push.send(protocol.Submit(job=crit))
        agent.recv(b, protocol.Cancel)
        assert b.model.jobs[low.id].reason == f"preempted by {crit.id}"     # shown while it stops
    finally:
        agent.close()
        b.close()
    b2 = make_broker(home, conf)
    try:
        back = FakeAgent(ctx, b2, slots=1, held=[protocol.HeldJob(job_id=low.id, attempt=1)])
        assert back.welcome.adopt == [low.id]
        back.send(protocol.Done(job_id=low.id, attempt=1, exit_code=-15, reason="cancelled"))
        assert back.recv(b2, protocol.Assign).job.id == crit.id
        job = b2.model.jobs[low.id]
        assert job.state is JobState.PENDING and job.reason == f"preempted by {crit.id}"
        assert job.retries == 0
    finally:
        b2.close()


def test_a_job_without_a_timeout_gets_its_types_default_else_the_global_one(home):
    home.mkdir()
    b = make_broker(home, '[scheduler.timeouts]\nreasoning = 3600\n')   # global timeout: 0, none
    try:
        jobs = [spec(type="reasoning"), spec(type="code"), spec(type="reasoning", timeout=5.0),
                spec(type="", task="analyze why the plan fails")]   # detected as reasoning
        for s in jobs:
            b.submit(s)
        assert [b.model.jobs[s.id].timeout for s in jobs] == [3600, 0, 5.0, 3600]
    finally:
        b.close()
