"""The indexed scheduler decides exactly as the plain reference scheduler.

Hypothesis drives both with the same random sequence of what the broker does — submit
(with dependencies and GPU needs), cancel, agents joining / leaving / reporting load /
draining / being forgotten / held by their accounts' usage limits, a restart's restore,
jobs sharing a work directory, picks, jobs ending (completed or failed, settling their
dependents), requeues, retries that avoid the agent a job failed on, preemption queries,
users and projects blocked and freed by their budgets, and the clock moving on (user locks
going stale) — and checks after every step that both agree on every answer, and that every
pick keeps the rules.
"""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import given, settings, strategies as st

from luzia.broker.reference import ReferenceScheduler
from luzia.broker.rules import BEHIND, SchedAgent, SchedJob, may_add, user_limit
from luzia.broker.scheduler import Scheduler
from luzia.config import SchedulerConfig
from tests.helpers import examples

TYPES = ["code", "text", "reasoning"]
AGENTS = ["surtr", "fenrir", "skadi", "ymir"]
SHARED = ["", "", "", "/w/a", "/w/b"]     # jobs in a shared workdir (a project without repo)

op = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 3), st.integers(0, 4), st.integers(0, 2),
              st.sampled_from(TYPES), st.sampled_from([0.0, 0.0, 0.0, 4.0, 16.0]),
              st.integers(-3, 40), st.floats(0, 20), st.sampled_from(SHARED)),
    st.tuples(st.just("cancel"), st.integers(0, 60)),
    st.tuples(st.just("agent_up"), st.sampled_from(AGENTS), st.integers(1, 3),
              st.sets(st.sampled_from(TYPES), min_size=1)),
    st.tuples(st.just("agent_down"), st.sampled_from(AGENTS)),
    st.tuples(st.just("agent_remove"), st.sampled_from(AGENTS)),
    st.tuples(st.just("load"), st.sampled_from(AGENTS), st.sampled_from([0.1, 0.5, 0.8, 0.9]),
              st.sampled_from([0.2, 0.5, 0.9]), st.sampled_from([-1.0, 2.0, 8.0, 24.0])),
    st.tuples(st.just("drain"), st.sampled_from(AGENTS), st.booleans()),
    st.tuples(st.just("pick"), st.integers(1, 4)),
    st.tuples(st.just("finish"), st.integers(0, 60), st.booleans()),
    st.tuples(st.just("requeue"), st.integers(0, 60)),
    st.tuples(st.just("restore"), st.integers(0, 60), st.sampled_from(AGENTS), st.floats(0, 30)),
    st.tuples(st.just("preempt"), st.floats(0, 10)),
    st.tuples(st.just("time"), st.floats(0, 10)),
    st.tuples(st.just("readd"), st.integers(0, 60), st.integers(0, 3)),
    st.tuples(st.just("same_object"), st.integers(0, 60)),
    st.tuples(st.just("retry"), st.integers(0, 60)),
    st.tuples(st.just("limit"), st.sampled_from(AGENTS), st.sampled_from([0.0, 0.0, 5000.0])),
    st.tuples(st.just("block"), st.sampled_from(["user", "project"]), st.integers(0, 4),
              st.booleans()),
)
WALL = 1000.0       # the wall clock every why() is asked at (limits show "until ... (in ...)")

configs = st.builds(
    SchedulerConfig, per_user=st.booleans(), max_per_project=st.integers(0, 3),
    max_concurrent=st.integers(0, 5), preempt=st.booleans(), preempt_after=st.sampled_from([0.0, 5.0]),
    per_user_limits=st.dictionaries(st.sampled_from(["u0", "u1"]), st.integers(0, 2), max_size=2),
    user_lock_stale=st.sampled_from([0.0, 4.0, 15.0, 3600.0]),
)


class Broker:
    """Drives both schedulers the way luzia/broker/server.py does, comparing every answer."""

    def __init__(self, cfg: SchedulerConfig) -> None:
        self.cfg = cfg
        self.fast, self.ref = Scheduler(cfg), ReferenceScheduler(cfg)
        self.seq = 0
        self.clock = 0.0                          # monotonic time, only moves forward
        self.jobs: dict[str, SchedJob] = {}      # every job not yet terminal
        self.placed: list[str] = []

    def both(self, method: str, *args):
        a, b = getattr(self.fast, method)(*args), getattr(self.ref, method)(*args)
        assert a == b, (method, args, a, b)
        return a

    def add(self, job: SchedJob) -> None:
        # each scheduler gets its own copy: resolve() rewrites `after`
        self.fast.add(replace(job))
        self.ref.add(replace(job))

    def fail(self, job_id: str) -> None:
        """A job ended without success: its dependents fail too, as the broker does."""
        self.jobs.pop(job_id, None)
        for dependent in self.both("resolve", job_id, False):
            self.both("remove", dependent)      # already gone: False from both
            self.fail(dependent)

    def step(self, o: tuple) -> None:
        kind = o[0]
        known = sorted(self.jobs)
        pending = [j for j in known if j not in self.placed]
        if kind == "add":
            _, prio, user, project, type_, gpu, dep, submitted = o[:8]
            self.seq += 1
            after = frozenset({known[dep % len(known)]}) if dep >= 0 and known else frozenset()
            job = SchedJob(id=f"j{self.seq:03d}", seq=self.seq, priority=prio, user=f"u{user}",
                           project=f"p{project}", type=type_, after=after, submitted=submitted,
                           gpu_mem_gb=gpu, shared=o[8] if len(o) > 8 else "")
            self.jobs[job.id] = job
            self.add(job)
        elif kind == "cancel" and pending:
            job_id = pending[o[1] % len(pending)]
            assert self.both("remove", job_id)
            self.fail(job_id)
        elif kind == "agent_up":
            _, name, slots, caps = o
            for s in (self.fast, self.ref):
                s.agent_up(SchedAgent(name=name, slots=slots, capabilities=frozenset(caps)))
        elif kind in ("agent_down", "agent_remove"):
            self.both(kind, o[1])
        elif kind == "load":
            self.both("agent_load", *o[1:])
        elif kind == "drain":
            self.both("set_draining", o[1], o[2])
        elif kind == "limit":
            self.both("set_limited", o[1], o[2], "account a")
        elif kind == "block":
            _, what, n, on = o
            name = f"u{n}" if what == "user" else f"p{n % 3}"
            if on:
                self.both("block", what, name, f"budget: {what} {name} over")
            else:
                self.both("unblock", what, name)
        elif kind == "pick":
            for _ in range(o[1]):
                if not self.pick():
                    break
        elif kind == "finish" and self.placed:
            job_id = self.placed.pop(o[1] % len(self.placed))
            self.both("release", job_id)
            if o[2]:
                self.jobs.pop(job_id)
                assert self.both("resolve", job_id, True) == []
            else:
                self.fail(job_id)
        elif kind == "requeue" and self.placed:      # agent lost, retry, or preempted
            job_id = self.placed.pop(o[1] % len(self.placed))
            self.both("release", job_id)
            self.add(replace(self.jobs[job_id], after=frozenset()))
        elif kind == "retry" and self.placed:        # failed there: retried, avoiding its agent
            job_id = self.placed.pop(o[1] % len(self.placed))
            job, failed_on, _ = self.fast.placed[job_id]
            self.both("release", job_id)
            job = replace(job, after=frozenset(), avoid=job.avoid | {failed_on})
            self.jobs[job_id] = job
            self.add(job)
        elif kind == "restore" and pending:
            job = self.jobs[pending[o[1] % len(pending)]]
            if not job.after:
                for s in (self.fast, self.ref):
                    s.place(replace(job), o[2], self.clock - o[3])
                self.placed.append(job.id)
        elif kind == "preempt":          # the broker's tick: the clock moves, then the query
            self.clock += o[1]
            self.both("preemptions", self.clock)
        elif kind == "time":
            self.clock += o[1]
            self.both("expire", self.clock)
        elif kind == "readd" and pending:           # a pending job added again, priority changed
            job = replace(self.ref.jobs[pending[o[1] % len(pending)]], priority=o[2])
            self.jobs[job.id] = job
            self.add(job)
        elif kind == "same_object" and self.placed:  # requeued as the very object it was placed as
            job_id = self.placed.pop(o[1] % len(self.placed))
            job = self.fast.placed[job_id][0]
            self.both("release", job_id)
            self.fast.add(job)
            self.ref.add(replace(job))
        self.compare()

    def pick(self) -> bool:
        picked = self.both("pick", self.clock)
        if picked is None:
            # nothing startable is left: every pending job has a reason of its own
            for job_id in self.fast.pending:
                assert self.fast.why(job_id, WALL) != BEHIND, job_id
            return False
        job_id, agent_name = picked
        self.placed.append(job_id)
        check_pick(self.fast, self.cfg, self.jobs[job_id], agent_name)
        return True

    def compare(self) -> None:
        fast, ref = self.fast, self.ref
        assert set(fast.pending) | set(fast.waiting) == set(ref.jobs)
        assert fast.pending_count() == ref.pending_count()
        assert fast.pending_by_priority() == ref.pending_by_priority()
        for name in AGENTS:
            assert fast.running_on(name) == ref.running_on(name)
            assert fast.agent_score(name) == ref.agent_score(name)
            assert sorted(fast.gpu_needs(name)) == sorted(ref.gpu_needs(name))
        for job_id in ref.jobs:
            assert fast.why(job_id, WALL) == ref.why(job_id, WALL)
        for user in {j.user for j in self.jobs.values()}:   # who holds each user's lock
            assert sorted(fast.by_user.get(user, ())) == sorted(ref._user_jobs(user)), user


def check_pick(s: Scheduler, cfg: SchedulerConfig, job: SchedJob, agent_name: str) -> None:
    """The rules hold right after a pick (a restore may legitimately break them before)."""
    agent = s.agents[agent_name]
    assert agent.live and not agent.draining and job.type in agent.capabilities
    assert not agent.limited_until
    assert ("user", job.user) not in s.blocked and ("project", job.project) not in s.blocked
    assert may_add(cfg, agent, len(s.running_on(agent_name)) - 1)   # over a ceiling: its only job
    assert job.gpu_mem_gb <= 0 or agent.gpu_free_gb >= job.gpu_mem_gb
    if agent_name in job.avoid:    # back where it failed only when no other healthy agent offers it
        assert not any(a.open and job.type in a.capabilities
                       and a.name not in job.avoid for a in s.agents.values())
    assert len(s.running_on(agent_name)) <= agent.slots
    limit = user_limit(cfg, job.user)
    assert not limit or len(s.by_user.get(job.user, ())) <= limit
    assert not cfg.max_per_project or s.by_project[job.project] <= cfg.max_per_project
    assert not job.shared or s.by_shared[job.shared] == {job.id}    # alone in its workdir
    assert not cfg.max_concurrent or len(s.placed) <= cfg.max_concurrent


@settings(max_examples=examples(400))
@given(cfg=configs, ops=st.lists(op, min_size=10, max_size=80))
def test_fast_scheduler_agrees_with_the_reference(cfg, ops):
    broker = Broker(cfg)
    for o in ops:
        broker.step(o)
    while broker.pick():        # drain: they agree to the end
        pass


narrow_add = st.tuples(st.just("add"), st.sampled_from([0, 3]), st.integers(0, 1),
                       st.integers(0, 1), st.sampled_from(TYPES[:2]), st.just(0.0), st.just(-1),
                       st.floats(0, 20))
narrow_op = st.one_of(
    narrow_add, narrow_add, narrow_add,
    st.tuples(st.just("cancel"), st.integers(0, 60)),
    st.tuples(st.just("cancel"), st.integers(0, 60)),
    st.tuples(st.just("cancel"), st.integers(0, 60)),
    st.tuples(st.just("pick"), st.integers(1, 3)),
    st.tuples(st.just("finish"), st.integers(0, 60), st.booleans()),
    st.tuples(st.just("requeue"), st.integers(0, 60)),
    st.tuples(st.just("retry"), st.integers(0, 60)),
    st.tuples(st.just("load"), st.sampled_from(AGENTS[:2]), st.sampled_from([0.1, 0.9]),
              st.just(0.2), st.just(-1.0)),
    st.tuples(st.just("preempt"), st.floats(0, 10)),
    st.tuples(st.just("time"), st.floats(0, 10)),
)


@settings(max_examples=examples(300))
@given(cfg=configs, ops=st.lists(narrow_op, min_size=40, max_size=150))
def test_few_buckets_with_cancels_and_preemption_agree(cfg, ops):
    """Two users, two projects, two types: deep buckets whose heads get cancelled, and
    critical jobs waiting behind low ones (preemption on, after 0 or 5 s)."""
    broker = Broker(replace(cfg, preempt=True, per_user=False))
    broker.step(("agent_up", "surtr", 2, {"code"}))
    broker.step(("agent_up", "fenrir", 2, {"code", "text"}))
    for o in ops:
        broker.step(o)
    while broker.pick():
        pass


@settings(max_examples=examples(60))
@given(ops=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 9), st.integers(0, 4),
                              st.sampled_from(TYPES), st.booleans()), min_size=50, max_size=300))
def test_many_users_and_projects_agree(ops):
    """Longer queues across more users, so buckets park and wake many times."""
    broker = Broker(SchedulerConfig())
    for name, caps in zip(AGENTS, (["reasoning"], ["text"], ["code"], TYPES), strict=True):
        broker.step(("agent_up", name, 2, set(caps)))
    for prio, user, project, type_, done in ops:
        broker.step(("add", prio, user, project, type_, 0.0, -1, 0.0))
        if done:
            broker.step(("finish", user, True))
        broker.step(("pick", 2))
    while broker.pick():
        pass


def random_walk(seed: int, steps: int) -> None:
    """Long seeded walks: deep buckets, many cancels of bucket heads, parks and wakes."""
    rng = random.Random(seed)
    cfg = SchedulerConfig(per_user=rng.random() < 0.5, max_per_project=rng.randint(0, 2),
                          max_concurrent=rng.choice([0, 0, 3]), preempt=True, preempt_after=1.0,
                          user_lock_stale=rng.choice([0.0, 3.0, 3600.0]))
    broker = Broker(cfg)
    broker.step(("agent_up", "surtr", rng.randint(1, 3), {"code"}))
    broker.step(("agent_up", "fenrir", rng.randint(1, 3), {"code", "text"}))
    for _ in range(steps):
        k = rng.random()
        if k < 0.45:
            broker.step(("add", rng.choice([0, 2, 3]), rng.randint(0, 2), rng.randint(0, 1),
                         rng.choice(TYPES[:2]), 0.0, rng.choice([-1, -1, -1, rng.randint(0, 40)]),
                         rng.uniform(0, 5), rng.choice(SHARED)))
        elif k < 0.65:
            broker.step(("cancel", rng.randint(0, 60)))
        elif k < 0.8:
            broker.step(("pick", 1))
        elif k < 0.9:
            broker.step(("finish", rng.randint(0, 60), rng.random() < 0.8))
        elif k < 0.93:
            broker.step(("requeue", rng.randint(0, 60)))
        elif k < 0.945:
            broker.step(("retry", rng.randint(0, 60)))
        elif k < 0.96:
            broker.step(("time", rng.uniform(0, 2)))
        else:
            broker.step(("preempt", rng.uniform(0, 2)))
    while broker.pick():
        pass


def test_seeded_random_walks_agree():
    for seed in range(examples(150)):
        random_walk(seed, 120)
