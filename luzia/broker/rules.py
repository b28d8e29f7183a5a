"""What a scheduling decision reads, and the rules both schedulers apply the same way.

`SchedJob` and `SchedAgent` are a job and an agent as a scheduler sees them. The indexed
`Scheduler` (scheduler.py) and the plain `ReferenceScheduler` (reference.py) keep their
counts each their own way, and share from here what must not differ between them: a
user's limit, when a user lock goes stale, when a retry avoids the host it failed on, and
the wording of "why is this job pending" (`explain`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from luzia.config import SchedulerConfig

SHOWN = 3   # ids named in one "why" message


@dataclass(slots=True)
class SchedJob:
    """A job as the scheduler sees it: what it needs, not what it does."""

    id: str
    seq: int            # broker's arrival sequence; FIFO order within a priority
    priority: int       # 0 critical .. 3 low (luzia.states.Priority)
    user: str
    project: str
    type: str           # already detected; never ""
    after: frozenset[str] = frozenset()   # dependency ids not yet completed
    submitted: float = 0.0                # time.monotonic() when it became pending
    gpu_mem_gb: float = 0.0               # needed free GPU memory (0: none)
    avoid: frozenset[str] = frozenset()   # agents it failed on: used only if no other can take it
    shared: str = ""                      # the work directory it shares with other jobs ("": own)

    def __lt__(self, other: SchedJob) -> bool:   # a bucket's heap orders its jobs by arrival
        return self.seq < other.seq


@dataclass(slots=True)
class SchedAgent:
    """An agent as the scheduler sees it: credits, capabilities, load."""

    name: str
    slots: int
    capabilities: frozenset[str]
    cpu: float = 0.0          # 0..1
    memory: float = 0.0       # 0..1
    gpu_free_gb: float = -1.0  # -1: no GPU information
    live: bool = True
    draining: bool = False
    limited_until: float = 0.0   # its accounts' usage limits: no new job until then (unix time)
    limited: str = ""            # which, for people: "account team-a"

    @property
    def open(self) -> bool:
        """Healthy for new work: live, not drained, not limited (load and slots aside)."""
        return self.live and not self.draining and not self.limited_until


def user_limit(cfg: SchedulerConfig, user: str) -> int:
    """Running jobs allowed to `user`; 0 means no limit."""
    if user in cfg.per_user_limits:
        return cfg.per_user_limits[user]
    return 1 if cfg.per_user else 0


def lock_expired(since: float, stale_after: float, now: float) -> bool:
    """A user lock taken at `since` is stale at `now` (both schedulers use this one test)."""
    return stale_after > 0 and since + stale_after < now


def _ids(ids: Iterable[str]) -> str:
    ids = sorted(ids)
    more = f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else ""
    return ", ".join(ids[:SHOWN]) + more


def explain(cfg: SchedulerConfig, job: SchedJob, agents: Iterable[SchedAgent],
            running_of: Callable[[str], int], user_jobs: Iterable[str],
            project_running: int, total_running: int, sharing: Iterable[str] = (),
            blocked: str = "", wall: float | None = None) -> str:
    """Why `job` cannot start now, first obstacle first; "" if nothing stops it. `blocked`
    is why its user or project may start nothing (a budget); `wall` the time now (unix),
    for "limited until 15:00 (in 42m)".

    Both schedulers call this with counts they keep (or compute) their own way, so the
    property test comparing their why() checks their bookkeeping, not this wording.
    `sharing`: the placed jobs in the job's shared work directory (one at a time there).
    """
    if job.after:
        return f"waiting for {_ids(job.after)}"
    if blocked:
        return blocked
    user_jobs = list(user_jobs)
    limit = user_limit(cfg, job.user)
    if limit and len(user_jobs) >= limit:
        return f"user {job.user} is running {_ids(user_jobs)}"
    cap = cfg.max_per_project
    if cap and project_running >= cap:
        return f"project {job.project} at its cap ({project_running}/{cap})"
    sharing = list(sharing)
    if job.shared and sharing:
        return (f"workdir {job.shared} in use by {_ids(sharing)} (one job at a time in a "
                "shared workdir; a project with `repo` gives each job its own worktree)")
    if cfg.max_concurrent and total_running >= cfg.max_concurrent:
        return f"global cap reached ({total_running}/{cfg.max_concurrent})"
    return _no_agent(cfg, job, agents, running_of, time.time() if wall is None else wall)


def _no_agent(cfg: SchedulerConfig, job: SchedJob, agents: Iterable[SchedAgent],
              running_of: Callable[[str], int], wall: float) -> str:
    """Why no agent takes `job` now (every other rule lets it start); "" if one does."""
    offering = sorted((a for a in agents if job.type in a.capabilities), key=lambda a: a.name)
    live = [a for a in offering if a.live]
    if not live:
        down = [a.name for a in offering]
        return f"no live agent offers {job.type!r}" + (f" ({', '.join(down)} down)" if down else "")
    avoiding = ""
    if job.avoid and others_offer(live, job.type, job.avoid):
        live = [a for a in live if a.name not in job.avoid]
        avoiding = f"avoiding {_ids(job.avoid)} (failed there); "
    reasons, full = [], []
    limited = [a for a in live if a.limited_until and not a.draining]
    if limited and len(limited) == len(live):
        return "; ".join(limited_text(a.limited, a.limited_until, wall) for a in limited)
    for a in live:
        running = running_of(a.name)
        reason = _refuses(cfg, a, running, job.gpu_mem_gb, wall)
        if not reason:
            return ""
        reasons.append(reason)
        if reason == f"{a.name} full ({running}/{a.slots})":
            full.append(f"{a.name} {running}/{a.slots}")
    if len(full) == len(reasons):
        return f"{avoiding}all {job.type!r} agents full ({', '.join(full)})"
    return avoiding + "; ".join(reasons)


def _refuses(cfg: SchedulerConfig, a: SchedAgent, running: int, gpu_mem_gb: float,
             wall: float) -> str:
    """Why live agent `a` (running `running` jobs) takes no job of this kind now, or ""."""
    if a.draining:
        return f"{a.name} draining"
    if a.limited_until:
        return f"{a.name}: {limited_text(a.limited, a.limited_until, wall)}"
    over = over_ceiling(cfg, a.cpu, a.memory)
    if over and not may_add(cfg, a, running):
        return f"{a.name} over {over}; running {running}, it takes more once under"
    if running >= a.slots:
        return f"{a.name} full ({running}/{a.slots})"
    if gpu_mem_gb > 0 and a.gpu_free_gb < gpu_mem_gb:
        free = "no GPU memory reported" if a.gpu_free_gb < 0 else f"{a.gpu_free_gb:g} GB GPU free"
        return f"{a.name} has {free}, needs {gpu_mem_gb:g} GB"
    return ""


def over_ceiling(cfg: SchedulerConfig, cpu: float, memory: float) -> str:
    """Which utilisation ceiling a host is over ("cpu ceiling (100 % > 80 %)"), or ""."""
    if cpu > cfg.cpu_ceiling:
        return f"cpu ceiling ({cpu * 100:.0f} % > {cfg.cpu_ceiling * 100:.0f} %)"
    if memory > cfg.memory_ceiling:
        return f"memory ceiling ({memory * 100:.0f} % > {cfg.memory_ceiling * 100:.0f} %)"
    return ""


def may_add(cfg: SchedulerConfig, a: SchedAgent, running: int) -> bool:
    """May Luzia add a job to agent `a`, which runs `running` of ours, as far as the
    ceilings go? The ceilings limit what Luzia adds to a host busy with other work; they
    must not starve it: an agent running nothing takes one job whatever its load."""
    return running <= 0 or (a.cpu <= cfg.cpu_ceiling and a.memory <= cfg.memory_ceiling)


def load_score(cfg: SchedulerConfig, agent: SchedAgent, running: int) -> float:
    """weight_cpu·cpu + weight_memory·memory + weight_queue·running/slots: lowest gets the job."""
    return (cfg.weight_cpu * agent.cpu + cfg.weight_memory * agent.memory
            + cfg.weight_queue * running / max(1, agent.slots))


def others_offer(agents: Iterable[SchedAgent], kind: str, avoid: frozenset[str]) -> bool:
    """Does a healthy (live, not draining, not limited) agent outside `avoid` offer `kind`?
    While one does, a retried job waits for it rather than go back where it failed."""
    return any(a.open and kind in a.capabilities and a.name not in avoid for a in agents)


def limited_text(what: str, until: float, wall: float) -> str:
    """"account team-a limited until 15:00 (in 42m)" (the broker's local time)."""
    left = max(0, int(until - wall + 59) // 60)
    span = f"{left // 60}h{left % 60:02d}m" if left >= 60 else f"{left}m"
    fmt = "%H:%M" if until - wall < 86400 else "%b %d %H:%M"
    return f"{what or 'account'} limited until {time.strftime(fmt, time.localtime(until))} (in {span})"


BEHIND = "behind higher-priority or older jobs"
