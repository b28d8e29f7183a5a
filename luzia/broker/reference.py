"""The reference scheduler: the rules written down as plainly as possible, slow on purpose.

Every decision scans every pending job in (priority, seq) order and every agent; every
count is recomputed from the placements. It keeps no index, so it has nothing to get out
of step. The indexed `Scheduler` must decide exactly as this one does
(tests/broker/test_scheduler_props.py); the "why pending" wording is shared (`explain`).
"""

from __future__ import annotations

import itertools

from luzia.broker.rules import (
    BEHIND,
    SchedAgent,
    SchedJob,
    explain,
    load_score,
    lock_expired,
    may_add,
    others_offer,
    user_limit,
)
from luzia.config import SchedulerConfig
from luzia.states import Priority


class ReferenceScheduler:
    """Same interface as `luzia.broker.scheduler.Scheduler`."""

    def __init__(self, cfg: SchedulerConfig) -> None:
        self.cfg = cfg
        self.jobs: dict[str, SchedJob] = {}                      # every pending job
        self.agents: dict[str, SchedAgent] = {}
        self.placed: dict[str, tuple[SchedJob, str, int]] = {}   # id -> (job, agent, order)
        self.since: dict[str, float] = {}                        # id -> when it was placed
        self.now = 0.0
        self._order = itertools.count()
        self.blocked: dict[tuple[str, str], str] = {}            # budgets: (kind, name) -> why

    # counts, recomputed every time -------------------------------------------------
    def _user_jobs(self, user: str) -> list[str]:
        """The user's placed jobs that hold its lock: agent live, placed not too long ago."""
        return [j.id for j, a, _ in self.placed.values()
                if j.user == user and a in self.agents and self.agents[a].live
                and not lock_expired(self.since[j.id], self.cfg.user_lock_stale, self.now)]

    def _project_running(self, project: str) -> int:
        return sum(1 for j, _, _ in self.placed.values() if j.project == project)

    def _sharing(self, shared: str) -> list[str]:
        """The placed jobs in the shared work directory `shared` (none for "")."""
        return [j.id for j, _, _ in self.placed.values() if shared and j.shared == shared]

    def _running(self, agent: str) -> int:
        return sum(1 for _, a, _ in self.placed.values() if a == agent)

    def _eligible(self, job: SchedJob) -> bool:
        """Every rule but the agent's."""
        limit = user_limit(self.cfg, job.user)
        cap = self.cfg.max_per_project
        total = self.cfg.max_concurrent
        return (not job.after and not self._blocked(job)
                and (not limit or len(self._user_jobs(job.user)) < limit)
                and (not cap or self._project_running(job.project) < cap)
                and not self._sharing(job.shared)
                and (not total or len(self.placed) < total))

    def _blocked(self, job: SchedJob) -> str:
        return self.blocked.get(("user", job.user)) or self.blocked.get(("project", job.project)) or ""

    def _agent_ok(self, agent: SchedAgent, job: SchedJob) -> bool:
        cfg = self.cfg
        running = self._running(agent.name)
        return (agent.live and not agent.draining and not agent.limited_until
                and job.type in agent.capabilities
                and may_add(cfg, agent, running)       # over a ceiling: only while it runs none
                and running < agent.slots
                and (job.gpu_mem_gb <= 0 or agent.gpu_free_gb >= job.gpu_mem_gb)
                and (agent.name not in job.avoid
                     or not others_offer(self.agents.values(), job.type, job.avoid)))

    def _agent_for(self, job: SchedJob) -> str | None:
        fits = [a.name for a in self.agents.values() if self._agent_ok(a, job)]
        if not fits:
            return None
        return min(fits, key=lambda name: (self.agent_score(name), name))

    # pending ---------------------------------------------------------------------
    def add(self, job: SchedJob) -> None:
        self.release(job.id)
        self.jobs[job.id] = job

    def remove(self, job_id: str) -> bool:
        return self.jobs.pop(job_id, None) is not None

    def place(self, job: SchedJob, agent: str, since: float | None = None) -> None:
        self.jobs.pop(job.id, None)
        self.placed[job.id] = (job, agent, next(self._order))
        self.since[job.id] = self.now if since is None else since

    def release(self, job_id: str) -> None:
        self.placed.pop(job_id, None)
        self.since.pop(job_id, None)

    def expire(self, now: float) -> bool:
        freed = [j for j, a, _ in self.placed.values()
                 if a in self.agents and self.agents[a].live
                 and lock_expired(self.since[j.id], self.cfg.user_lock_stale, now)
                 and not lock_expired(self.since[j.id], self.cfg.user_lock_stale, self.now)]
        self.now = now
        return bool(freed)

    def resolve(self, job_id: str, succeeded: bool) -> list[str]:
        waiting = sorted((j for j in self.jobs.values() if job_id in j.after), key=lambda j: j.seq)
        for job in waiting:
            if succeeded:
                job.after = job.after - {job_id}
            else:
                del self.jobs[job.id]
        return [] if succeeded else [j.id for j in waiting]

    # agents ----------------------------------------------------------------------
    def agent_up(self, agent: SchedAgent) -> None:
        self.agents[agent.name] = agent

    def agent_load(self, name: str, cpu: float, memory: float, gpu_free_gb: float = -1.0) -> None:
        if name in self.agents:
            agent = self.agents[name]
            agent.cpu, agent.memory, agent.gpu_free_gb = cpu, memory, gpu_free_gb

    def agent_down(self, name: str) -> None:
        if name in self.agents:
            self.agents[name].live = False

    def agent_remove(self, name: str) -> None:
        self.agents.pop(name, None)

    def set_draining(self, name: str, draining: bool) -> None:
        if name in self.agents:
            self.agents[name].draining = draining

    def set_limited(self, name: str, until: float, what: str = "") -> None:
        if name in self.agents:
            self.agents[name].limited_until = until
            self.agents[name].limited = what if until else ""

    def block(self, kind: str, name: str, reason: str) -> None:
        self.blocked[(kind, name)] = reason

    def unblock(self, kind: str, name: str) -> None:
        self.blocked.pop((kind, name), None)

    # decisions -------------------------------------------------------------------
    def pick(self, now: float | None = None) -> tuple[str, str] | None:
        if now is not None:
            self.expire(now)
        for job in sorted(self.jobs.values(), key=lambda j: (j.priority, j.seq)):
            if self._eligible(job):
                agent = self._agent_for(job)
                if agent is not None:
                    self.place(job, agent)
                    return job.id, agent
        return None

    def why(self, job_id: str, wall: float | None = None) -> str:
        job = self.jobs.get(job_id)
        if job is None:
            return ""
        return explain(self.cfg, job, self.agents.values(), self._running,
                       self._user_jobs(job.user), self._project_running(job.project),
                       len(self.placed), self._sharing(job.shared), self._blocked(job),
                       wall) or BEHIND

    def preemptions(self, now: float) -> list[tuple[str, str]]:
        self.expire(now)
        if not self.cfg.preempt:
            return []
        out: list[tuple[str, str]] = []
        chosen: set[str] = set()
        for job in sorted(self.jobs.values(), key=lambda j: j.seq):
            limit = user_limit(self.cfg, job.user)
            cap = self.cfg.max_per_project
            if (job.priority != Priority.CRITICAL or job.after or self._blocked(job)
                    or now - job.submitted < self.cfg.preempt_after
                    or (limit and len(self._user_jobs(job.user)) >= limit)
                    or (cap and self._project_running(job.project) >= cap)
                    or self._sharing(job.shared)):
                continue
            if self._eligible(job) and self._agent_for(job) is not None:
                continue
            victims = [(order, low.id) for low, agent, order in self.placed.values()
                       if low.priority == Priority.LOW and low.id not in chosen
                       and agent in self.agents and self._victim_host_ok(self.agents[agent], job)]
            if victims:
                victim = max(victims)[1]
                chosen.add(victim)
                out.append((job.id, victim))
        return out

    def _victim_host_ok(self, agent: SchedAgent, job: SchedJob) -> bool:
        """Could `job` go where the victim runs, once the victim is gone?"""
        return (agent.live and not agent.draining and not agent.limited_until
                and job.type in agent.capabilities
                and may_add(self.cfg, agent, self._running(agent.name) - 1))

    # introspection -----------------------------------------------------------------
    def pending_count(self) -> int:
        return len(self.jobs)

    def pending_by_priority(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for job in self.jobs.values():
            out[job.priority] = out.get(job.priority, 0) + 1
        return dict(sorted(out.items()))

    def running_on(self, agent: str) -> set[str]:
        return {job_id for job_id, (_, a, _) in self.placed.items() if a == agent}

    def gpu_needs(self, agent: str) -> list[float]:
        return [job.gpu_mem_gb for job, a, _ in self.placed.values() if a == agent]

    def agent_score(self, name: str) -> float:
        agent = self.agents.get(name)
        return load_score(self.cfg, agent, self._running(name)) if agent else 0.0
