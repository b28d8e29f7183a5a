"""The agents: what `luzia agents status|allocate|drain|undrain|forget` asks the broker."""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from luzia.broker import accounting
from luzia.broker.fleet import Agent
from luzia.broker.model import Model
from luzia.broker.ops.request import Args
from luzia.broker.rules import over_ceiling, user_limit
from luzia.broker.scheduler import Scheduler
from luzia.config import Config
from luzia.errors import BadRequest, NotFound, Refused
from luzia.states import JobState

log = logging.getLogger(__name__)

GROWTH_WINDOW = 300.0      # seconds looked back for "sustained queue growth"
GROWTH_MIN = 10            # net growth over the window worth a recommendation
IDLE_LOAD = 0.20           # a live agent with no job and a load score below this is idle
# the older queue dispatcher's load levels (seed 002), by load score; "critical" from the
# default cpu ceiling on
LOAD_LEVELS = ((0.30, "low"), (0.60, "moderate"), (0.80, "high"))
OPEN = ("ok", "busy")      # healths that take a job now


def status(m: Model, args: Args) -> list[dict[str, Any]]:
    """agents.status → [agent + {health, load_level, draining, load_parts: {cpu, memory,
    queue}, heartbeat_age, dead_for}]: one entry per agent the broker knows, by name.
    `load_level` is the load score as low (< 0.30), moderate (< 0.60), high (< 0.80) or
    critical; `dead_for` the seconds since a dead agent's last beat (null while live). An
    agent whose protocol the broker does not serve has health `refused`, and `outdated` says
    why (versions.py); `refused` is a second agent refused under a live agent's name
    ({pid, instance, count, ago}, or null)."""
    now = time.monotonic()
    views = {a.name: _view(m, a, now) for a in m.fleet}
    for refused in m.fleet.outdated.values():
        views[refused.name] = {**views.get(refused.name, {}), **refused.to_dict(now)}
    return [views[name] for name in sorted(views)]


def _view(m: Model, agent: Agent, now: float) -> dict[str, Any]:
    cfg = m.cfg.scheduler
    score = m.sched.agent_score(agent.name)
    out = agent.to_dict(now, round(score, 4))
    queue = len(agent.jobs) / max(1, agent.slots)
    out["load_parts"] = {"cpu": round(cfg.weight_cpu * agent.cpu, 4),
                         "memory": round(cfg.weight_memory * agent.memory, 4),
                         "queue": round(cfg.weight_queue * queue, 4)}
    out["load_level"] = load_level(score)
    out["draining"] = agent.draining
    out["health"] = health(m.cfg, agent, now)
    out["heartbeat_age"] = out["last_seen"]
    out["dead_for"] = None if agent.dead_since is None else round(now - agent.dead_since, 3)
    out["refused"] = m.fleet.clash(agent.name, now)   # a second agent under its name, refused
    return out


def load_level(score: float) -> str:
    """low | moderate | high | critical: the older queue dispatcher's words for a load score."""
    return next((name for top, name in LOAD_LEVELS if score < top), "critical")


def health(cfg: Config, agent: Agent, now: float) -> str:
    """The first thing that keeps work off it, or what it takes: gone (dead for
    broker.gone_after with no job: out of the alerts), dead, degraded (it said why: its disk
    is full), draining, over-ceiling (a busy host running a job of ours: no more), busy
    (over a ceiling but running none of ours: it takes one), full, ok."""
    if not agent.live:
        gone = agent.dead_since is not None and now - agent.dead_since > cfg.broker.gone_after
        return "gone" if gone and not agent.jobs else "dead"
    if agent.degraded:
        return "degraded"
    if agent.draining:
        return "draining"
    if over_ceiling(cfg.scheduler, agent.cpu, agent.memory):
        return "over-ceiling" if agent.jobs else "busy"
    if len(agent.jobs) >= agent.slots:
        return "full"
    return "ok"


def allocate(m: Model, args: Args) -> dict[str, Any]:
    """agents.allocate → {placements: [{type, agent, load, why}], recommendations: [text]}:
    where the next job of each type would go now (the lowest load score among the agents
    that may take it) or why it would wait; then seed 002's auto-scaling advice."""
    cfg = m.cfg.scheduler
    now = time.monotonic()
    healths = {a.name: (a, health(m.cfg, a, now)) for a in sorted(m.fleet, key=lambda a: a.name)}
    waiting = {j.type for j in m.jobs.values() if j.state is JobState.PENDING}
    kinds = sorted({c for a in m.fleet for c in a.capabilities}
                   | set(cfg.type_rules) | {cfg.default_type} | waiting)
    placements = [_placement(m, kind, healths) for kind in kinds]
    return {"placements": placements, "recommendations": _advice(m, placements, healths)}


def _placement(m: Model, kind: str, healths: dict[str, tuple[Agent, str]]) -> dict[str, Any]:
    offering = [(a, h) for a, h in healths.values() if kind in a.capabilities and h != "gone"]
    open_agents = [a for a, h in offering if h in OPEN]
    if not open_agents:
        why = ("no agent offers it" if not offering
               else "would wait: " + ", ".join(sorted(f"{a.name} {h}" for a, h in offering)))
        return {"type": kind, "agent": None, "load": None, "why": why}
    best = min(open_agents, key=lambda a: (m.sched.agent_score(a.name), a.name))
    score = m.sched.agent_score(best.name)
    others = len(open_agents) - 1
    over = over_ceiling(m.cfg.scheduler, best.cpu, best.memory)
    why = (f"lowest load score {score:.2f} ({len(best.jobs)}/{best.slots} slots, "
           f"cpu {best.cpu * 100:.0f} %, memory {best.memory * 100:.0f} %)"
           + (f" of {others + 1} open agents" if others else "; the only open agent")
           + (f"; over its {over}, its host is busy: it runs none of ours, so it takes one"
              if over else ""))
    return {"type": kind, "agent": best.name, "load": round(score, 4), "why": why}


def _advice(m: Model, placements: list[dict[str, Any]],
            healths: dict[str, tuple[Agent, str]]) -> list[str]:
    """Seed 002's auto-scaling advice: sustained queue growth that capacity would serve,
    types nobody can take (and which agent could), idle hosts, busy hosts."""
    bound = capacity_bound(m.sched)
    out = _growth(m, sum(bound.values()))
    live = sorted((a for a, h in healths.values() if a.live),
                  key=lambda a: (m.sched.agent_score(a.name), a.name))
    waiting = Counter(j.type for j in m.jobs.values() if j.state is JobState.PENDING)
    for p in placements:
        kind = p["type"]
        # a type nobody offers never runs, whatever else holds its jobs; one that is offered
        # but full asks for capacity only for the jobs capacity would start
        count = waiting[kind] if p["why"] == "no agent offers it" else bound[kind]
        if p["agent"] is None and count:
            out.append(f"add capacity for {kind!r}: {count} jobs wait and {p['why']}"
                       + _who_could(p, live))
    pending = m.sched.pending_count()
    for agent, state in healths.values():
        over = over_ceiling(m.cfg.scheduler, agent.cpu, agent.memory)
        if state == "over-ceiling":
            out.append(f"{agent.name} is over its {over}: it runs {len(agent.jobs)} and gets "
                       "no more until it is under; reduce its slots or add a host")
        elif state == "busy":
            out.append(f"{agent.name} is over its {over} with none of our jobs: its host is "
                       "busy with other work, so it runs one job at a time")
        elif (state == "ok" and not agent.jobs and not pending
              and m.sched.agent_score(agent.name) < IDLE_LOAD):
            out.append(f"{agent.name} is idle: it could be scaled down")
    return out


def _growth(m: Model, startable: int) -> list[str]:
    """"scale up" when the queue grew for GROWTH_WINDOW and more hosts would start jobs;
    a queue that grew only with jobs held by their own rules says that instead."""
    submitted, finished = accounting.flow(m.store.db, time.time() - GROWTH_WINDOW)
    pending = m.sched.pending_count()
    if submitted - finished < GROWTH_MIN or pending < GROWTH_MIN:
        return []
    grew = (f"the queue grew by {submitted - finished} in the last {GROWTH_WINDOW / 60:.0f} min "
            f"({submitted} submitted, {finished} finished; {pending} pending)")
    if startable:
        return [f"scale up: {grew}; {startable} of them would start on more capacity"]
    return [f"no scale-up: {grew}, but every pending job waits on its own user's lock, its "
            "project's cap, the global cap or a dependency: more hosts would not start any"]


def _who_could(placement: dict[str, Any], live: list[Agent]) -> str:
    """For a type no agent offers: the least loaded live agent, which could."""
    if placement["why"] != "no agent offers it":
        return ""
    if not live:
        return f"; start an agent that offers {placement['type']!r}"
    return (f"; add {placement['type']!r} to the capabilities of {live[0].name} (the least "
            f"loaded live agent: agent.capabilities on its host), or start an agent that offers it")


def capacity_bound(sched: Scheduler) -> Counter[str]:
    """Per task type, how many pending jobs more agents would start now: those whose
    dependencies are done and whose user, project and the global cap have room (a user's
    one lock lets one of its jobs count, not all of them). One pass over the pending jobs."""
    cfg = sched.cfg
    users: dict[str, int] = {}
    projects: dict[str, int] = {}
    room = cfg.max_concurrent - len(sched.placed) if cfg.max_concurrent else -1
    out: Counter[str] = Counter()
    for job in sched.pending.values():
        if room == 0:
            break
        if job.user not in users:
            limit = user_limit(cfg, job.user)
            users[job.user] = limit - len(sched.by_user.get(job.user, ())) if limit else -1
        if job.project not in projects:
            cap = cfg.max_per_project
            projects[job.project] = cap - sched.by_project.get(job.project, 0) if cap else -1
        if users[job.user] and projects[job.project]:
            out[job.type] += 1
            users[job.user] -= 1
            projects[job.project] -= 1
            room -= 1
    return out


def drain(m: Model, args: Args) -> dict[str, Any]:
    """agents.drain {name, dry_run=false} → agent: it finishes its running jobs and gets no
    new ones. The drain is kept over the agent's reconnects and over broker restarts (in
    the store). With dry_run nothing changes; the agent is returned as it is."""
    return _set_draining(m, args, True)


def undrain(m: Model, args: Args) -> dict[str, Any]:
    """agents.undrain {name, dry_run=false} → agent: it takes new jobs again."""
    return _set_draining(m, args, False)


def forget(m: Model, args: Args) -> dict[str, Any]:
    """agents.forget {name, dry_run=false} → agent (as it was): a dead agent that holds no
    job leaves the broker's fleet, its alerts and its drain; refused (code `refused`)
    while it beats or holds jobs. An agent that says Hello later joins as a new one."""
    agent = _named(m, args)
    if agent.live:
        raise Refused(f"agent {agent.name} is live (it beat {time.monotonic() - agent.last_seen:.0f}s "
                      "ago): stop it on its host first; only a dead agent can be forgotten")
    if agent.jobs:
        raise Refused(f"agent {agent.name} holds {len(agent.jobs)} jobs "
                      f"({', '.join(sorted(agent.jobs)[:3])}): they are requeued after "
                      f"broker.lost_grace; forget it then, or cancel them")
    out = _view(m, agent, time.monotonic())
    if not args.get("dry_run", bool, False):
        drained = agent.name in m.fleet.drained
        m.fleet.forget(agent)
        if drained:
            m.store.set_drained(m.fleet.drained)
        log.info("agent %s forgotten by an operator (dead for %.0fs)", agent.name,
                 out["dead_for"] or 0)
        m.out.publish_agent("forgotten", {"name": agent.name})
    return out


def _named(m: Model, args: Args) -> Agent:
    name = args.get("name", str)
    if not name:
        raise BadRequest("no agent name given")
    agent = m.fleet.get(name)
    if agent is None:
        known = ", ".join(sorted(a.name for a in m.fleet)) or "none"
        raise NotFound(f"no agent {name!r} (known: {known})")
    return agent


def _set_draining(m: Model, args: Args, draining: bool) -> dict[str, Any]:
    agent = _named(m, args)
    name = agent.name
    if args.get("dry_run", bool, False):
        return _view(m, agent, time.monotonic())
    m.fleet.drain(agent, draining)
    m.store.set_drained(m.fleet.drained)      # committed with this turn
    m.dirty = True
    log.info("agent %s %s by an operator (%d jobs running)", name,
             "draining" if draining else "undrained", len(agent.jobs))
    m.out.publish_agent("draining" if draining else "undrained", {"name": name})
    return _view(m, agent, time.monotonic())


OPS = {"agents.status": status, "agents.allocate": allocate, "agents.drain": drain,
       "agents.undrain": undrain, "agents.forget": forget}
