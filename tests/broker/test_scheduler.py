"""One test per scheduling rule, per "why pending" message, and for preemption.

Each runs against both schedulers: the indexed one the broker uses and the reference.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from luzia.broker.reference import ReferenceScheduler
from luzia.broker.rules import BEHIND, SchedAgent, SchedJob
from luzia.broker.scheduler import Scheduler
from luzia.config import SchedulerConfig


@pytest.fixture(params=[Scheduler, ReferenceScheduler], ids=["fast", "reference"])
def make(request):
    def build(**cfg):
        return request.param(SchedulerConfig(**cfg))
    return build


_seq = iter(range(1, 1_000_000))


def job(id, user="alice", project="overbits", type="code", priority=2, **kw) -> SchedJob:
    return SchedJob(id=id, seq=kw.pop("seq", next(_seq)), priority=priority, user=user,
                    project=project, type=type, **kw)


def agent(name, slots=2, caps=("code",), **kw) -> SchedAgent:
    return SchedAgent(name=name, slots=slots, capabilities=frozenset(caps), **kw)


def drain(s) -> list[tuple[str, str]]:
    out = []
    while (p := s.pick()) is not None:
        out.append(p)
    return out


def test_strict_priority_then_fifo(make):
    s = make(per_user=False, max_per_project=0)
    s.agent_up(agent("skadi", slots=10))
    for j in (job("low", priority=3), job("n1"), job("crit", priority=0), job("n2"), job("high", priority=1)):
        s.add(j)
    assert [j for j, _ in drain(s)] == ["crit", "high", "n1", "n2", "low"]


def test_a_blocked_job_never_blocks_the_ones_behind_it(make):
    s = make()
    s.agent_up(agent("skadi", slots=3, caps=("code", "text")))
    s.add(job("a1", user="alice"))
    s.add(job("a2", user="alice"))          # alice's second waits for her first
    s.add(job("r1", type="reasoning", user="bob"))   # nobody offers reasoning
    s.add(job("c1", user="carol", project="musica"))
    assert drain(s) == [("a1", "skadi"), ("c1", "skadi")]
    assert s.why("a2") == "user alice is running a1"
    assert s.why("r1") == "no live agent offers 'reasoning'"


def test_per_user_limit_override_and_off(make):
    s = make(per_user_limits={"alice": 2}, max_per_project=0)
    s.agent_up(agent("skadi", slots=5))
    for i in range(3):
        s.add(job(f"a{i}", user="alice"))
    assert len(drain(s)) == 2
    s = make(per_user=False, max_per_project=0)
    s.agent_up(agent("skadi", slots=5))
    for i in range(3):
        s.add(job(f"a{i}", user="alice"))
    assert len(drain(s)) == 3


def test_project_cap_and_global_cap(make):
    s = make(per_user=False, max_per_project=2, max_concurrent=3)
    s.agent_up(agent("skadi", slots=10))
    for i in range(3):
        s.add(job(f"o{i}", project="overbits"))
    for i in range(3):
        s.add(job(f"m{i}", project="musica"))
    assert [j for j, _ in drain(s)] == ["o0", "o1", "m0"]
    assert s.why("o2") == "project overbits at its cap (2/2)"
    assert s.why("m1") == "global cap reached (3/3)"
    s.release("o0")
    assert s.pick() == ("o2", "skadi")      # overbits is 1/2 again and o2 is older than m1
    assert s.why("m1") == "global cap reached (3/3)"


def test_type_routing_and_lowest_score_placement(make):
    s = make(per_user=False, max_per_project=0)
    s.agent_up(agent("surtr", caps=("reasoning",)))
    s.agent_up(agent("fenrir", slots=3, caps=("text", "code"), cpu=0.5))
    s.agent_up(agent("skadi", caps=("code",), cpu=0.1))
    s.add(job("r", type="reasoning"))
    s.add(job("t", type="text"))
    s.add(job("c1"))
    s.add(job("c2"))
    s.add(job("c3"))
    got = dict(drain(s))
    assert got["r"] == "surtr" and got["t"] == "fenrir"
    # skadi: 0.4*0.1 + 0.25*0/2 = 0.04 < fenrir's 0.4*0.5 + 0.25*1/3; then 0.165 < 0.283; then skadi is full
    assert [got["c1"], got["c2"], got["c3"]] == ["skadi", "skadi", "fenrir"]
    assert s.agent_score("skadi") == pytest.approx(0.4 * 0.1 + 0.25)
    assert s.agent_score("nobody") == 0.0
    assert s.running_on("skadi") == {"c1", "c2"}


def test_ties_go_by_name(make):
    s = make()
    s.agent_up(agent("b"))
    s.agent_up(agent("a"))
    s.add(job("x"))
    assert s.pick() == ("x", "a")


def test_a_busy_host_runs_one_job_at_a_time_and_says_so(make):
    """Over a ceiling, an agent running none of our jobs still takes one (the ceilings limit
    what Luzia adds, they must not starve the fleet); with one running it takes no more."""
    s = make(per_user=False, max_per_project=0)
    s.agent_up(agent("fenrir", cpu=0.91))
    s.add(job("x"))
    s.add(job("y"))
    assert s.pick() == ("x", "fenrir")
    assert s.pick() is None
    assert s.why("y") == "fenrir over cpu ceiling (91 % > 80 %); running 1, it takes more once under"
    s.agent_load("fenrir", 0.5, 0.9)
    assert s.why("y") == ("fenrir over memory ceiling (90 % > 85 %); running 1, it takes more "
                          "once under")
    s.release("x")
    assert s.pick() == ("y", "fenrir")                  # idle again: one more
    s.agent_load("fenrir", 0.8, 0.85)                   # at the ceiling is still fine
    s.add(job("z"))
    assert s.pick() == ("z", "fenrir")


def test_draining_and_down_agents_get_nothing(make):
    s = make(per_user=False, max_per_project=0)
    s.agent_up(agent("fenrir"))
    s.add(job("x"))
    s.set_draining("fenrir", True)
    assert s.pick() is None and s.why("x") == "fenrir draining"
    s.set_draining("fenrir", False)
    s.agent_down("fenrir")
    assert s.pick() is None and s.why("x") == "no live agent offers 'code' (fenrir down)"
    s.agent_up(agent("fenrir"))                        # revival replaces the record
    assert s.pick() == ("x", "fenrir")


def test_gpu_memory_need(make):
    s = make(per_user=False, max_per_project=0)
    s.agent_up(agent("skadi", gpu_free_gb=4.0))
    s.add(job("big", gpu_mem_gb=8.0))
    s.add(job("small"))
    assert s.pick() == ("small", "skadi")        # the big one does not block it
    assert s.why("big") == "skadi has 4 GB GPU free, needs 8 GB"
    s.agent_load("skadi", 0.1, 0.1, 12.0)
    assert s.pick() == ("big", "skadi")


def test_all_agents_full_message(make):
    s = make(per_user=False, max_per_project=0)
    s.agent_up(agent("skadi"))
    for i in range(3):
        s.add(job(f"c{i}"))
    drain(s)
    assert s.why("c2") == "all 'code' agents full (skadi 2/2)"
    s.agent_up(agent("ymir", slots=1, cpu=0.95))
    assert s.pick() == ("c2", "ymir")                 # busy, but it runs none of ours yet
    s.add(job("c3"))
    assert s.why("c3") in ("ymir over cpu ceiling (95 % > 80 %); running 1, it takes more once "
                           "under; skadi full (2/2)",
                           "skadi full (2/2); ymir over cpu ceiling (95 % > 80 %); running 1, it "
                           "takes more once under")


def test_dependencies(make):
    s = make(per_user=False, max_per_project=0)
    s.agent_up(agent("skadi", slots=5))
    s.add(job("a"))
    s.add(job("b", after=frozenset({"a"})))
    s.add(job("c", after=frozenset({"a"})))
    s.add(job("d", after=frozenset({"b"})))
    assert drain(s) == [("a", "skadi")]
    assert s.why("b") == "waiting for a"
    s.release("a")
    assert s.resolve("a", True) == []
    assert [j for j, _ in drain(s)] == ["b", "c"]
    s.release("b")
    assert s.resolve("b", False) == ["d"]            # the broker fails d
    assert s.pending_count() == 0 and s.why("d") == ""


def test_behind_and_not_pending(make):
    s = make(per_user=False, max_per_project=0)
    s.agent_up(agent("skadi"))
    s.add(job("a"))
    assert s.why("a") == BEHIND                      # could start: the next pick() takes it
    assert s.why("nope") == ""


def test_remove_requeue_place_and_counts(make):
    s = make(per_user=False, max_per_project=0)
    s.add(job("a", priority=0))
    s.add(job("b", priority=3))
    assert s.pending_by_priority() == {0: 1, 3: 1}
    assert s.remove("a") is True and s.remove("a") is False
    s.place(job("r"), "skadi")                       # broker restart: skadi has not said Hello
    assert s.running_on("skadi") == {"r"}
    s.agent_up(agent("skadi", slots=1))              # its credit is still taken
    assert s.pick() is None
    s.release("r")
    s.release("r")                                   # no-op
    assert s.pick() == ("b", "skadi")
    s.release("b")
    s.add(job("b", priority=3))                      # requeued
    assert s.pending_count() == 1
    s.agent_remove("skadi")
    assert s.pick() is None


def alice_running_a1(s, now: float | None = None):
    """skadi (2 slots) runs alice's a1; her a2 waits for her lock."""
    s.agent_up(agent("skadi", slots=2))
    s.add(job("a1", seq=1))
    s.add(job("a2", seq=2))
    assert s.pick(now) == ("a1", "skadi") and s.pick(now) is None
    assert s.why("a2") == "user alice is running a1"
    return s


def test_user_lock_is_free_again_when_its_job_ends(make):
    s = alice_running_a1(make())
    s.release("a1")
    assert s.pick() == ("a2", "skadi")


def test_user_lock_of_a_lost_agent_is_free(make):
    s = alice_running_a1(make())
    s.agent_down("skadi")                            # lost: a1 keeps skadi's credit, not the lock
    s.agent_up(agent("fenrir"))
    assert s.running_on("skadi") == {"a1"}
    assert s.pick() == ("a2", "fenrir")
    s.add(job("a3", seq=3))
    s.agent_up(agent("skadi", slots=2))              # skadi is back: a1 holds the lock again
    assert s.pick() is None and s.why("a3") == "user alice is running a1, a2"


def test_user_lock_goes_stale(make):
    s = alice_running_a1(make(user_lock_stale=60.0, max_per_project=0), now=100.0)
    assert s.pick(160.0) is None                     # exactly 60 s: still held
    assert s.why("a2") == "user alice is running a1"
    assert s.expire(160.5) is True                   # older than 60 s: stale
    assert s.pick(160.5) == ("a2", "skadi")
    s.agent_up(agent("fenrir", slots=2))
    s.place(job("a3", seq=3), "fenrir", since=0.0)   # restored, taken long ago: stale at once
    s.add(job("a4", seq=4))
    assert s.pick() is None and s.why("a4") == "user alice is running a2"
    s.release("a2")
    assert s.expire(161.0) is False                  # a released lock does not expire again
    assert s.pick() == ("a4", "fenrir")


def test_user_lock_never_stale_when_off(make):
    s = alice_running_a1(make(user_lock_stale=0.0), now=0.0)
    assert s.pick(1e9) is None


def test_preemption(make):
    s = make(preempt=True, preempt_after=10.0, per_user=False, max_per_project=0)
    s.agent_up(agent("skadi", slots=2))
    s.add(job("low1", priority=3, seq=1))
    s.add(job("low2", priority=3, seq=2))
    assert len(drain(s)) == 2
    s.add(job("crit", priority=0, seq=3, submitted=100.0))
    assert s.preemptions(105.0) == []                # not waited long enough
    assert s.preemptions(111.0) == [("crit", "low2")]   # the youngest low job
    off = make(per_user=False)
    off.add(job("crit2", priority=0, submitted=0.0))
    assert off.preemptions(1e9) == []


def test_preemption_skips_jobs_blocked_by_their_own_limits(make):
    s = make(preempt=True, preempt_after=0.0, max_per_project=0)
    s.agent_up(agent("skadi", slots=1))
    s.add(job("mine", priority=3, user="alice", seq=1))
    assert drain(s)
    s.add(job("crit", priority=0, user="alice", seq=2))
    assert s.preemptions(1.0) == []                  # alice's own lock, not the host, stops it


def test_preemption_names_each_victim_once(make):
    s = make(preempt=True, preempt_after=0.0, per_user=False, max_per_project=0)
    s.agent_up(agent("skadi", slots=3, caps=("code", "text")))
    s.add(job("n", priority=2, seq=1))
    s.add(job("l1", priority=3, seq=2))
    s.add(job("l2", priority=3, seq=3))
    drain(s)
    for i, seq in enumerate((4, 5, 6)):
        s.add(job(f"c{i}", priority=0, seq=seq, type="text"))
    assert s.preemptions(1.0) == [("c0", "l2"), ("c1", "l1")]


def test_preemption_on_a_busy_host_makes_room_for_one(make):
    """Over its cpu ceiling, a host runs one job at a time: a critical job may preempt the
    low one it runs (without the victim it runs nothing), but not one of two."""
    s = make(preempt=True, preempt_after=0.0, per_user=False, max_per_project=0)
    s.agent_up(agent("skadi", slots=2, cpu=0.95))
    s.add(job("low", priority=3, seq=1))
    assert drain(s) == [("low", "skadi")]
    s.add(job("crit", priority=0, seq=2))
    assert s.preemptions(1.0) == [("crit", "low")]
    s.agent_load("skadi", 0.5, 0.1)
    s.add(job("low2", priority=3, seq=3))
    s.remove("crit")
    assert drain(s) == [("low2", "skadi")]
    s.agent_load("skadi", 0.95, 0.1)
    s.add(job("crit2", priority=0, seq=4))
    assert s.preemptions(2.0) == []                  # one victim would leave one running


def test_agent_up_keeps_placed_jobs(make):
    s = make(per_user=False, max_per_project=0)
    s.agent_up(agent("skadi", slots=1))
    s.add(job("a"))
    s.add(job("b"))
    assert s.pick() == ("a", "skadi")
    s.agent_up(replace(agent("skadi", slots=1), cpu=0.2))    # a Hello again
    assert s.running_on("skadi") == {"a"} and s.pick() is None


def test_a_retried_job_avoids_the_agent_it_failed_on_while_another_offers_its_type(make):
    s = make(per_user=False, max_per_project=0)
    s.agent_up(agent("surtr", slots=1))
    s.agent_up(agent("fenrir", slots=1))
    s.add(job("busy"))
    assert s.pick() == ("busy", "fenrir")        # fenrir is full now
    s.add(job("retried", avoid=frozenset({"surtr"})))
    s.add(job("fresh"))
    assert s.pick() == ("fresh", "surtr")        # the retry waits for fenrir; others go on
    assert s.why("retried") == "avoiding surtr (failed there); all 'code' agents full (fenrir 1/1)"
    s.release("fresh")
    assert s.pick() is None                      # surtr is free, but it failed there
    s.agent_down("fenrir")                       # no other healthy agent: back to surtr
    assert s.pick() == ("retried", "surtr")


def test_a_retry_goes_back_when_the_others_are_draining_or_lack_the_type(make):
    s = make(per_user=False, max_per_project=0)
    s.agent_up(agent("surtr", slots=1))
    s.agent_up(agent("fenrir", slots=1, caps=("text",)))
    s.agent_up(agent("skadi", slots=1, draining=True))
    s.add(job("retried", avoid=frozenset({"surtr"})))
    assert s.pick() == ("retried", "surtr")
