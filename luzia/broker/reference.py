"""The reference scheduler: obviously correct and slow. The fast one must decide the same."""

from __future__ import annotations

from luzia.broker.scheduler import Fleet, SchedAgent, SchedJob, preemptions
from luzia.config import SchedulerConfig


class ReferenceScheduler:
    def __init__(self, cfg: SchedulerConfig) -> None:
        self.cfg = cfg
        self.fleet = Fleet(cfg)
        self.jobs: dict[str, SchedJob] = {}      # every pending job, deps open or not

    @property
    def pending(self) -> dict[str, SchedJob]:
        return {i: j for i, j in self.jobs.items() if not j.after}

    def add(self, job: SchedJob) -> None:
        if job.id not in self.jobs and job.id not in self.fleet.placed:
            self.jobs[job.id] = job

    def remove(self, job_id: str) -> bool:
        return self.jobs.pop(job_id, None) is not None

    def place(self, job: SchedJob, agent: str) -> None:
        self.jobs.pop(job.id, None)
        self.fleet.place(job, agent)

    def release(self, job_id: str) -> None:
        self.fleet.unplace(job_id)

    def resolve(self, job_id: str, succeeded: bool) -> list[str]:
        failed = []
        for job in sorted(self.jobs.values(), key=lambda j: j.id):
            if job_id in job.after:
                if succeeded:
                    job.after = job.after - {job_id}
                else:
                    failed.append(job.id)
        for job_id_ in failed:
            del self.jobs[job_id_]
        return failed

    def agent_up(self, agent: SchedAgent) -> None:
        self.fleet.agents[agent.name] = agent

    def agent_load(self, name: str, cpu: float, memory: float, gpu_free_gb: float = -1.0) -> None:
        if name in self.fleet.agents:
            a = self.fleet.agents[name]
            a.cpu, a.memory, a.gpu_free_gb = cpu, memory, gpu_free_gb

    def agent_down(self, name: str) -> None:
        if name in self.fleet.agents:
            self.fleet.agents[name].live = False

    def agent_remove(self, name: str) -> None:
        self.fleet.agents.pop(name, None)

    def set_draining(self, name: str, draining: bool) -> None:
        if name in self.fleet.agents:
            self.fleet.agents[name].draining = draining

    def pick(self, now: float | None = None) -> tuple[str, str] | None:
        for job in sorted(self.jobs.values(), key=lambda j: (j.priority, j.seq)):
            if job.after or self.fleet.why_not(job):
                continue
            agent = self.fleet.best_agent(job)
            if agent is not None:
                del self.jobs[job.id]
                self.fleet.place(job, agent)
                return job.id, agent
        return None

    def why(self, job_id: str) -> str:
        job = self.jobs.get(job_id)
        if job is None:
            return ""
        return self.fleet.why_not(job) or "behind higher-priority or older jobs"

    def preemptions(self, now: float) -> list[tuple[str, str]]:
        return preemptions(self, now)

    def pending_count(self) -> int:
        return len(self.jobs)

    def pending_by_priority(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for job in self.jobs.values():
            out[job.priority] = out.get(job.priority, 0) + 1
        return out

    def running_on(self, agent: str) -> set[str]:
        return self.fleet.running_on(agent)

    def agent_score(self, name: str) -> float:
        return self.fleet.score(name)
