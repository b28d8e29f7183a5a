"""The indexed scheduler decides exactly as the plain reference scheduler, over random
sequences of submissions, agents joining/leaving/loading/draining, picks and job ends."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings, strategies as st

from luzia.broker.reference import ReferenceScheduler
from luzia.broker.scheduler import SchedAgent, SchedJob, Scheduler
from luzia.config import SchedulerConfig

TYPES = ["code", "text", "reasoning"]
AGENTS = ["surtr", "fenrir", "skadi"]

op = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 3), st.integers(0, 4), st.integers(0, 2),
              st.sampled_from(TYPES), st.booleans()),
    st.tuples(st.just("remove"), st.integers(0, 50)),
    st.tuples(st.just("agent_up"), st.sampled_from(AGENTS), st.integers(1, 3),
              st.sets(st.sampled_from(TYPES), min_size=1)),
    st.tuples(st.just("agent_down"), st.sampled_from(AGENTS)),
    st.tuples(st.just("load"), st.sampled_from(AGENTS), st.sampled_from([0.1, 0.5, 0.9]),
              st.sampled_from([0.2, 0.9])),
    st.tuples(st.just("drain"), st.sampled_from(AGENTS), st.booleans()),
    st.tuples(st.just("pick")),
    st.tuples(st.just("finish"), st.integers(0, 50), st.booleans()),
)

configs = st.builds(SchedulerConfig, per_user=st.booleans(), max_per_project=st.integers(0, 3),
                    max_concurrent=st.integers(0, 5))


@settings(max_examples=300, deadline=None)
@given(cfg=configs, ops=st.lists(op, min_size=20, max_size=120))
def test_fast_scheduler_agrees_with_the_reference(cfg, ops):
    fast, ref = Scheduler(cfg), ReferenceScheduler(cfg)
    seq = 0
    placed: list[str] = []
    known: list[str] = []
    for o in ops:
        kind = o[0]
        if kind == "add":
            _, prio, user, project, type_, dep = o
            seq += 1
            after = frozenset(known[-1:]) if dep and known and known[-1] not in placed else frozenset()
            job = dict(id=f"j{seq}", seq=seq, priority=prio, user=f"u{user}", project=f"p{project}",
                       type=type_, after=after)
            for s in (fast, ref):
                s.add(SchedJob(**job))
            known.append(job["id"])
        elif kind == "remove" and known:
            job_id = known[o[1] % len(known)]
            assert fast.remove(job_id) == ref.remove(job_id)
            if job_id not in placed:
                assert fast.resolve(job_id, False) == ref.resolve(job_id, False)
        elif kind == "agent_up":
            _, name, slots, caps = o
            for s in (fast, ref):
                s.agent_up(SchedAgent(name=name, slots=slots, capabilities=frozenset(caps)))
        elif kind == "agent_down":
            for s in (fast, ref):
                s.agent_down(o[1])
        elif kind == "load":
            for s in (fast, ref):
                s.agent_load(o[1], o[2], o[3])
        elif kind == "drain":
            for s in (fast, ref):
                s.set_draining(o[1], o[2])
        elif kind == "pick":
            a, b = fast.pick(), ref.pick()
            assert a == b
            if a:
                placed.append(a[0])
                job, agent = fast.fleet.placed[a[0]]
                assert job.type in fast.fleet.agents[agent].capabilities
                assert len(fast.fleet.on_agent[agent]) <= fast.fleet.agents[agent].slots
        elif kind == "finish" and placed:
            job_id = placed.pop(o[1] % len(placed))
            for s in (fast, ref):
                s.release(job_id)
            assert fast.resolve(job_id, o[2]) == ref.resolve(job_id, o[2])
        assert fast.pending_count() == ref.pending_count()
        check_invariants(fast, cfg)
    # drain both: they must agree to the end
    while True:
        a, b = fast.pick(), ref.pick()
        assert a == b
        if a is None:
            break
    check_invariants(fast, cfg)


def check_invariants(s: Scheduler, cfg: SchedulerConfig) -> None:
    fleet = s.fleet
    users: dict[str, int] = {}
    projects: dict[str, int] = {}
    for job, _ in fleet.placed.values():
        users[job.user] = users.get(job.user, 0) + 1
        projects[job.project] = projects.get(job.project, 0) + 1
    if cfg.per_user:
        assert all(n <= 1 for n in users.values())
    if cfg.max_per_project:
        assert all(n <= cfg.max_per_project for n in projects.values())
    if cfg.max_concurrent:
        assert len(fleet.placed) <= cfg.max_concurrent


def test_why_pending_explains_itself():
    cfg = SchedulerConfig()
    s = Scheduler(cfg)
    assert s.why("nope") == ""
    s.add(SchedJob(id="a", seq=1, priority=2, user="alice", project="overbits", type="reasoning"))
    assert s.why("a") == "no live agent offers 'reasoning'"
    s.agent_up(SchedAgent(name="skadi", slots=1, capabilities=frozenset({"code"})))
    s.add(SchedJob(id="b", seq=2, priority=2, user="bob", project="overbits", type="code"))
    s.add(SchedJob(id="c", seq=3, priority=2, user="bob", project="musica", type="code"))
    assert s.pick() == ("b", "skadi")
    assert s.why("c") == "user bob is running b"
    s.add(SchedJob(id="d", seq=4, priority=2, user="carol", project="dss", type="code"))
    assert s.why("d") == "all 'code' agents full (skadi 1/1)"
    s.agent_load("skadi", 0.91, 0.1)
    s.release("b")
    assert s.why("d") == "skadi over cpu ceiling (91 %)"
    s.add(SchedJob(id="e", seq=5, priority=2, user="dave", project="x", type="code", after=frozenset({"d"})))
    assert s.why("e") == "waiting for d"
