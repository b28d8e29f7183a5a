"""The scheduler: which pending job starts next, and on which agent.

Rules (seeds 002–004): strict priority, FIFO within a priority, among the jobs eligible
now — the user runs fewer than its limit (one by default), the project fewer than
`max_per_project`, the global cap is not reached, the dependencies are done, and a live,
non-draining agent under its ceilings has a free slot and offers the job's type. The job
goes to the eligible agent with the lowest load score.

Cost: pending jobs live in buckets keyed by (priority, type, user, project), each a heap by
arrival. Per (priority, type) a heap holds the heads of the buckets that may be ready; a
bucket whose user or project is blocked is dropped from it when met and pushed back when
that user or project frees a slot. A decision therefore pops only entries that are stale or
blocked since they were pushed — work that does not grow with the queue's length.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass

from luzia.config import SchedulerConfig
from luzia.states import Priority


@dataclass(slots=True)
class SchedJob:
    id: str
    seq: int            # broker's arrival sequence; FIFO order within a priority
    priority: int       # 0 critical .. 3 low
    user: str
    project: str
    type: str
    after: frozenset[str] = frozenset()   # dependencies not yet completed
    submitted: float = 0.0                # time.monotonic() when it became pending
    gpu_mem_gb: float = 0.0               # free GPU memory it needs (0: none)


@dataclass(slots=True)
class SchedAgent:
    name: str
    slots: int
    capabilities: frozenset[str]
    cpu: float = 0.0
    memory: float = 0.0
    gpu_free_gb: float = -1.0
    live: bool = True
    draining: bool = False


Key = tuple[int, str, str, str]   # (priority, type, user, project)


class Fleet:
    """Agents, their placed jobs and the checks both schedulers share."""

    def __init__(self, cfg: SchedulerConfig) -> None:
        self.cfg = cfg
        self.agents: dict[str, SchedAgent] = {}
        self.placed: dict[str, tuple[SchedJob, str]] = {}          # job id -> (job, agent)
        self.on_agent: dict[str, set[str]] = defaultdict(set)
        self.by_user: dict[str, set[str]] = defaultdict(set)
        self.by_project: dict[str, set[str]] = defaultdict(set)

    # limits ----------------------------------------------------------------------
    def user_limit(self, user: str) -> int:
        if user in self.cfg.per_user_limits:
            return self.cfg.per_user_limits[user]
        return 1 if self.cfg.per_user else 0

    def user_ok(self, user: str) -> bool:
        limit = self.user_limit(user)
        return not limit or len(self.by_user.get(user, ())) < limit

    def project_ok(self, project: str) -> bool:
        cap = self.cfg.max_per_project
        return not cap or len(self.by_project.get(project, ())) < cap

    def global_ok(self) -> bool:
        return not self.cfg.max_concurrent or len(self.placed) < self.cfg.max_concurrent

    def usable(self, agent: SchedAgent) -> bool:
        """Live, not draining, under its ceilings, with a free slot."""
        return (agent.live and not agent.draining and agent.cpu <= self.cfg.cpu_ceiling
                and agent.memory <= self.cfg.memory_ceiling
                and len(self.on_agent.get(agent.name, ())) < agent.slots)

    def score(self, name: str) -> float:
        agent = self.agents.get(name)
        if agent is None:
            return 0.0
        c = self.cfg
        return (c.weight_cpu * agent.cpu + c.weight_memory * agent.memory
                + c.weight_queue * len(self.on_agent.get(name, ())) / max(1, agent.slots))

    def best_agent(self, job: SchedJob) -> str | None:
        best: tuple[float, str] | None = None
        for agent in self.agents.values():
            if (job.type in agent.capabilities and self.usable(agent)
                    and (job.gpu_mem_gb <= 0 or agent.gpu_free_gb >= job.gpu_mem_gb)):
                cand = (self.score(agent.name), agent.name)
                if best is None or cand < best:
                    best = cand
        return best[1] if best else None

    def open_types(self) -> set[str]:
        """Types some usable agent offers right now."""
        out: set[str] = set()
        for agent in self.agents.values():
            if self.usable(agent):
                out |= agent.capabilities
        return out

    # placements ------------------------------------------------------------------
    def place(self, job: SchedJob, agent: str) -> None:
        self.placed[job.id] = (job, agent)
        self.on_agent[agent].add(job.id)
        self.by_user[job.user].add(job.id)
        self.by_project[job.project].add(job.id)

    def unplace(self, job_id: str) -> SchedJob | None:
        entry = self.placed.pop(job_id, None)
        if entry is None:
            return None
        job, agent = entry
        self.on_agent[agent].discard(job_id)
        self.by_user[job.user].discard(job_id)
        self.by_project[job.project].discard(job_id)
        return job

    def running_on(self, agent: str) -> set[str]:
        return set(self.on_agent.get(agent, ()))

    # explanations ----------------------------------------------------------------
    def why_not(self, job: SchedJob) -> str:
        """Why `job` cannot start now, or "" if it could."""
        if job.after:
            return "waiting for " + ", ".join(sorted(job.after)[:3])
        if not self.user_ok(job.user):
            running = sorted(self.by_user[job.user])
            return f"user {job.user} is running {', '.join(running[:2])}"
        if not self.project_ok(job.project):
            n = len(self.by_project[job.project])
            return f"project {job.project} at its cap ({n}/{self.cfg.max_per_project})"
        if not self.global_ok():
            return f"global cap reached ({len(self.placed)}/{self.cfg.max_concurrent})"
        offering = [a for a in self.agents.values() if job.type in a.capabilities]
        live = [a for a in offering if a.live]
        if not live:
            return f"no live agent offers {job.type!r}"
        reasons = []
        for a in sorted(live, key=lambda a: a.name):
            used = len(self.on_agent.get(a.name, ()))
            if a.draining:
                reasons.append(f"{a.name} draining")
            elif a.cpu > self.cfg.cpu_ceiling:
                reasons.append(f"{a.name} over cpu ceiling ({a.cpu * 100:.0f} %)")
            elif a.memory > self.cfg.memory_ceiling:
                reasons.append(f"{a.name} over memory ceiling ({a.memory * 100:.0f} %)")
            elif used >= a.slots:
                reasons.append(f"{a.name} {used}/{a.slots}")
            elif job.gpu_mem_gb > 0 and a.gpu_free_gb < job.gpu_mem_gb:
                reasons.append(f"{a.name} has {max(a.gpu_free_gb, 0):g} GB GPU memory free")
            else:
                return ""
        if all("/" in r and "ceiling" not in r for r in reasons):
            return f"all {job.type!r} agents full ({', '.join(reasons)})"
        return "; ".join(reasons)


class Scheduler:
    """Indexed scheduler; `ReferenceScheduler` (reference.py) is the plain one it must equal."""

    def __init__(self, cfg: SchedulerConfig) -> None:
        self.cfg = cfg
        self.fleet = Fleet(cfg)
        self.pending: dict[str, SchedJob] = {}         # ready to be considered (no open deps)
        self.waiting: dict[str, SchedJob] = {}         # pending with open dependencies
        self.dependents: dict[str, set[str]] = defaultdict(set)
        self.buckets: dict[Key, list[tuple[int, str]]] = {}
        self.ready: dict[tuple[int, str], list[tuple[int, str, str]]] = defaultdict(list)
        self.keys_of_user: dict[str, set[Key]] = defaultdict(set)
        self.keys_of_project: dict[str, set[Key]] = defaultdict(set)
        self.counts = [0, 0, 0, 0]

    # pending ---------------------------------------------------------------------
    def add(self, job: SchedJob) -> None:
        if job.id in self.pending or job.id in self.waiting or job.id in self.fleet.placed:
            return
        self.counts[job.priority] += 1
        if job.after:
            self.waiting[job.id] = job
            for dep in job.after:
                self.dependents[dep].add(job.id)
            return
        self._enqueue(job)

    def _enqueue(self, job: SchedJob) -> None:
        self.pending[job.id] = job
        key = (job.priority, job.type, job.user, job.project)
        bucket = self.buckets.setdefault(key, [])
        heapq.heappush(bucket, (job.seq, job.id))
        self.keys_of_user[job.user].add(key)
        self.keys_of_project[job.project].add(key)
        if bucket[0][1] == job.id:           # a new head: announce it
            heapq.heappush(self.ready[(job.priority, job.type)], (job.seq, job.user, job.project))

    def remove(self, job_id: str) -> bool:
        job = self.pending.pop(job_id, None) or self.waiting.pop(job_id, None)
        if job is None:
            return False
        self.counts[job.priority] -= 1
        for dep in job.after:
            self.dependents.get(dep, set()).discard(job_id)
        return True     # its bucket entry goes lazily, when it reaches the head

    # placed ----------------------------------------------------------------------
    def place(self, job: SchedJob, agent: str) -> None:
        self.remove(job.id)
        self.fleet.place(job, agent)

    def release(self, job_id: str) -> None:
        job = self.fleet.unplace(job_id)
        if job is None:
            return
        self._wake(self.keys_of_user.get(job.user, ()))
        self._wake(self.keys_of_project.get(job.project, ()))

    def resolve(self, job_id: str, succeeded: bool) -> list[str]:
        failed = []
        for dep_id in sorted(self.dependents.pop(job_id, set())):
            job = self.waiting.get(dep_id)
            if job is None:
                continue
            if not succeeded:
                self.remove(dep_id)
                failed.append(dep_id)
                continue
            job.after = job.after - {job_id}
            if not job.after:
                del self.waiting[dep_id]
                self._enqueue(job)
        return failed

    # agents ----------------------------------------------------------------------
    def agent_up(self, agent: SchedAgent) -> None:
        self.fleet.agents[agent.name] = agent

    def agent_load(self, name: str, cpu: float, memory: float, gpu_free_gb: float = -1.0) -> None:
        agent = self.fleet.agents.get(name)
        if agent is not None:
            agent.cpu, agent.memory, agent.gpu_free_gb = cpu, memory, gpu_free_gb

    def agent_down(self, name: str) -> None:
        agent = self.fleet.agents.get(name)
        if agent is not None:
            agent.live = False

    def agent_remove(self, name: str) -> None:
        self.fleet.agents.pop(name, None)

    def set_draining(self, name: str, draining: bool) -> None:
        agent = self.fleet.agents.get(name)
        if agent is not None:
            agent.draining = draining

    # decisions -------------------------------------------------------------------
    def pick(self, now: float | None = None) -> tuple[str, str] | None:
        if not self.fleet.global_ok():
            return None
        types = self.fleet.open_types()
        if not types:
            return None
        for priority in range(len(Priority)):
            if not self.counts[priority]:
                continue
            while True:
                best = None
                for kind in types:
                    head = self._head(priority, kind)
                    if head is not None and (best is None or head[0] < best[0]):
                        best = head
                if best is None:
                    break
                job = self.pending[best[1]]
                agent = self.fleet.best_agent(job)
                if agent is None:   # only a GPU-memory need can leave a head without an agent
                    heapq.heappop(self.ready[(priority, job.type)])
                    continue
                self._take(job)
                self.fleet.place(job, agent)
                return job.id, agent
        return None

    def _head(self, priority: int, kind: str) -> tuple[int, str] | None:
        """The oldest startable job's (seq, id) of this priority and type; drops stale entries."""
        heap = self.ready.get((priority, kind))
        while heap:
            seq, user, project = heap[0]
            key = (priority, kind, user, project)
            top = self._bucket_top(key)
            if top is None or top[0] != seq:
                heapq.heappop(heap)
                if top is not None and top[0] > seq:   # the old head left: announce the new one
                    heapq.heappush(heap, (top[0], user, project))
                continue
            if not (self.fleet.user_ok(user) and self.fleet.project_ok(project)):
                heapq.heappop(heap)                     # parked until the user/project frees
                continue
            return top
        return None

    def _bucket_top(self, key: Key) -> tuple[int, str] | None:
        bucket = self.buckets.get(key)
        while bucket:
            seq, job_id = bucket[0]
            job = self.pending.get(job_id)
            if job is not None and job.seq == seq:
                return bucket[0]
            heapq.heappop(bucket)
        if bucket is not None:
            del self.buckets[key]
            self.keys_of_user[key[2]].discard(key)
            self.keys_of_project[key[3]].discard(key)
        return None

    def _take(self, job: SchedJob) -> None:
        key = (job.priority, job.type, job.user, job.project)
        heapq.heappop(self.buckets[key])
        del self.pending[job.id]
        self.counts[job.priority] -= 1
        heapq.heappop(self.ready[(job.priority, job.type)])
        top = self._bucket_top(key)
        if top is not None:
            heapq.heappush(self.ready[(job.priority, job.type)], (top[0], job.user, job.project))

    def _wake(self, keys) -> None:
        for key in list(keys):
            top = self._bucket_top(key)
            if top is not None:
                heapq.heappush(self.ready[(key[0], key[1])], (top[0], key[2], key[3]))

    def why(self, job_id: str) -> str:
        job = self.pending.get(job_id) or self.waiting.get(job_id)
        if job is None:
            return ""
        return self.fleet.why_not(job) or "behind higher-priority or older jobs"

    def preemptions(self, now: float) -> list[tuple[str, str]]:
        return preemptions(self, now)

    # introspection -----------------------------------------------------------------
    def pending_count(self) -> int:
        return len(self.pending) + len(self.waiting)

    def pending_by_priority(self) -> dict[int, int]:
        return {p: n for p, n in enumerate(self.counts) if n}

    def running_on(self, agent: str) -> set[str]:
        return self.fleet.running_on(agent)

    def agent_score(self, name: str) -> float:
        return self.fleet.score(name)


def preemptions(s, now: float) -> list[tuple[str, str]]:
    """(critical job, low victim) pairs: a critical job waiting longer than preempt_after that
    no agent can take now may displace the youngest low job on an agent offering its type."""
    cfg = s.cfg
    if not cfg.preempt:
        return []
    out: list[tuple[str, str]] = []
    taken: set[str] = set()
    critical = sorted((j for j in s.pending.values() if j.priority == Priority.CRITICAL
                       and now - j.submitted >= cfg.preempt_after), key=lambda j: j.seq)
    for job in critical:
        if s.fleet.best_agent(job) is not None:
            continue
        victims = [(placed.seq, placed.id) for placed, agent in s.fleet.placed.values()
                   if placed.priority == Priority.LOW and placed.id not in taken
                   and job.type in s.fleet.agents.get(agent, SchedAgent("", 0, frozenset())).capabilities]
        if victims:
            victim = max(victims)[1]
            taken.add(victim)
            out.append((job.id, victim))
    return out
