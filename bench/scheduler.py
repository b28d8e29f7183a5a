"""Scheduler decision cost, memory per pending job, and seed 003's workload replayed.

Prints, for the indexed scheduler (and the reference at 1k/10k pending), the time of one
pick() in a steady state: a running job ends (release + resolve), a new one arrives, the
broker picks until nothing can start. 1,000 users, 100 projects, mixed priorities and
types, eight agents (24 slots), default rules (one running job per user, two per project).
Memory per pending job is what tracemalloc sees while the jobs are added (the SchedJob,
its id string and every index entry). Then seed 003's 30 tasks on surtr/fenrir/skadi with
a simulated clock (time scaled 100x down), makespan against the lower bound of the slots.

Run: .venv/bin/python bench/scheduler.py [--quick]
"""

from __future__ import annotations

import heapq
import math
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from luzia.broker.reference import ReferenceScheduler  # noqa: E402
from luzia.broker.scheduler import SchedAgent, SchedJob, Scheduler  # noqa: E402
from luzia.config import SchedulerConfig  # noqa: E402

USERS, PROJECTS = 1000, 100
TYPES = ["code", "code", "text", "reasoning"]
PRIORITIES = [0] * 5 + [1] * 15 + [2] * 60 + [3] * 20      # percent
AGENTS = [("surtr", 2, ("reasoning",)), ("ymir", 4, ("reasoning", "text")),
          ("fenrir", 3, ("text",)), ("loki", 3, ("text", "code")),
          ("skadi", 2, ("code",)), ("thor", 4, ("code",)), ("odin", 4, ("code", "text")),
          ("freya", 2, ("code", "reasoning"))]


class Workload:
    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.seq = 0

    def job(self) -> SchedJob:
        self.seq += 1
        rng = self.rng
        return SchedJob(id=f"{self.seq % 240000:06d}-{rng.getrandbits(48):012x}", seq=self.seq,
                        priority=rng.choice(PRIORITIES), user=f"user{rng.randrange(USERS)}",
                        project=f"proj{rng.randrange(PROJECTS)}", type=rng.choice(TYPES),
                        submitted=time.monotonic())


def build(cls, n: int, wl: Workload):
    s = cls(SchedulerConfig())
    for name, slots, caps in AGENTS:
        s.agent_up(SchedAgent(name=name, slots=slots, capabilities=frozenset(caps),
                              cpu=wl.rng.uniform(0.1, 0.6), memory=wl.rng.uniform(0.1, 0.6)))
    for _ in range(n):
        s.add(wl.job())
    return s


def steady_state(cls, n: int, rounds: int) -> tuple[list[float], list[float], list[float]]:
    """Wall and thread-CPU times (µs) of the picks that started a job, and wall time of
    release+resolve+add. CPU time leaves out the time other processes held the core."""
    wl = Workload()
    s = build(cls, n, wl)
    running = []
    while (p := s.pick()) is not None:
        running.append(p[0])
    picks, cpu, churn = [], [], []
    clock, cpu_clock = time.perf_counter, time.thread_time
    for _ in range(rounds):
        done = running.pop(wl.rng.randrange(len(running))) if running else None
        new = wl.job()
        t0 = clock()
        if done is not None:
            s.release(done)
            s.resolve(done, True)
        s.add(new)
        churn.append((clock() - t0) * 1e6)
        while True:
            c0, t0 = cpu_clock(), clock()
            p = s.pick()
            dt, dc = (clock() - t0) * 1e6, (cpu_clock() - c0) * 1e6
            if p is None:
                break
            picks.append(dt)
            cpu.append(dc)
            running.append(p[0])
    return picks, cpu, churn


def memory_per_job(n: int) -> float:
    wl = Workload()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    s = build(Scheduler, n, wl)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert s.pending_count() == n
    return used / n


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")


def replay_seed_003() -> tuple[float, float, int]:
    """Seed 003: 10 code 30 s, 10 text 20 s, 10 reasoning 40 s; surtr reasoning 2 slots,
    fenrir text 3, skadi code 2; every task its own user and project; time / 100."""
    durations = {"code": 0.30, "text": 0.20, "reasoning": 0.40}
    slots = {"reasoning": 2, "text": 3, "code": 2}
    s = Scheduler(SchedulerConfig())
    s.agent_up(SchedAgent("surtr", 2, frozenset({"reasoning"})))
    s.agent_up(SchedAgent("fenrir", 3, frozenset({"text"})))
    s.agent_up(SchedAgent("skadi", 2, frozenset({"code"})))
    seq = 0
    kinds = {}
    for kind in ("code", "text", "reasoning"):
        for i in range(10):
            seq += 1
            job_id = f"{kind}-{i}"
            kinds[job_id] = kind
            s.add(SchedJob(id=job_id, seq=seq, priority=2, user=f"u{seq}", project=f"p{seq}", type=kind))
    now, ends, decisions = 0.0, [], 0
    while True:
        while (p := s.pick(now)) is not None:
            decisions += 1
            heapq.heappush(ends, (now + durations[kinds[p[0]]], p[0]))
        if not ends:
            break
        now, job_id = heapq.heappop(ends)
        s.release(job_id)
        s.resolve(job_id, True)
    bound = max(math.ceil(10 / slots[k]) * durations[k] for k in durations)
    return now, bound, decisions


def main() -> None:
    quick = "--quick" in sys.argv
    rounds = 2000 if quick else 20000
    print(f"scheduler decision time, steady state, {USERS} users, {PROJECTS} projects, "
          f"{len(AGENTS)} agents ({sum(a[1] for a in AGENTS)} slots), {rounds} rounds")
    print("(wall: perf_counter; cpu: this thread's CPU time, without other processes' turns)")
    print(f"{'pending':>8} {'scheduler':>10} {'wall p50':>9} {'wall p99':>9} {'cpu p50':>9} "
          f"{'cpu p99':>9} {'wall max':>9} {'churn p99':>9} {'bytes/job':>9}")
    for n in (1_000, 10_000, 100_000):
        for cls, name, k in ((Scheduler, "indexed", rounds),
                             (ReferenceScheduler, "reference", 200 if n == 1_000 else 20)):
            if cls is ReferenceScheduler and n > 10_000:
                continue
            picks, cpu, churn = steady_state(cls, n, k)
            mem = f"{memory_per_job(n):>9.0f}" if cls is Scheduler else f"{'':>9}"
            print(f"{n:>8} {name:>10} {pct(picks, 50):>7.1f}µs {pct(picks, 99):>7.1f}µs "
                  f"{pct(cpu, 50):>7.1f}µs {pct(cpu, 99):>7.1f}µs {max(picks):>7.0f}µs "
                  f"{pct(churn, 99):>7.1f}µs {mem}")
    makespan, bound, decisions = replay_seed_003()
    print(f"seed 003 replay (time / 100): makespan {makespan:.2f}s, lower bound from the slots "
          f"{bound:.2f}s ({makespan / bound:.2f}x), {decisions} decisions")


if __name__ == "__main__":
    main()
