"""The agents: what `luzia agents status|allocate|drain|undrain` asks the broker."""

from __future__ import annotations

import logging
import time
from typing import Any

from luzia.broker import accounting
from luzia.broker.fleet import Agent
from luzia.broker.model import Model
from luzia.broker.ops.request import Args
from luzia.config import SchedulerConfig
from luzia.errors import BadRequest, NotFound
from luzia.states import JobState

log = logging.getLogger(__name__)

GROWTH_WINDOW = 300.0      # seconds looked back for "sustained queue growth"
GROWTH_MIN = 10            # net growth over the window worth a recommendation
IDLE_LOAD = 0.20           # a live agent with no job and a load score below this is idle


def status(m: Model, args: Args) -> list[dict[str, Any]]:
    """agents.status → [agent + {health, draining, load_parts: {cpu, memory, queue},
    heartbeat_age}]: one entry per agent the broker knows, by name; an agent whose protocol
    it does not serve has health `refused` and `refused` says why (versions.py)."""
    now = time.monotonic()
    views = {a.name: _view(m, a, now) for a in m.fleet}
    for refused in m.fleet.refused.values():
        views[refused.name] = {**views.get(refused.name, {}), **refused.to_dict(now)}
    return [views[name] for name in sorted(views)]


def _view(m: Model, agent: Agent, now: float) -> dict[str, Any]:
    cfg = m.cfg.scheduler
    out = agent.to_dict(now, round(m.sched.agent_score(agent.name), 4))
    queue = len(agent.jobs) / max(1, agent.slots)
    out["load_parts"] = {"cpu": round(cfg.weight_cpu * agent.cpu, 4),
                         "memory": round(cfg.weight_memory * agent.memory, 4),
                         "queue": round(cfg.weight_queue * queue, 4)}
    out["draining"] = agent.draining
    out["health"] = health(cfg, agent)
    out["heartbeat_age"] = out["last_seen"]
    return out


def health(cfg: SchedulerConfig, agent: Agent) -> str:
    """ok | draining | over-ceiling | full | dead: the first thing that keeps work off it."""
    if not agent.live:
        return "dead"
    if agent.draining:
        return "draining"
    if agent.cpu > cfg.cpu_ceiling or agent.memory > cfg.memory_ceiling:
        return "over-ceiling"
    if len(agent.jobs) >= agent.slots:
        return "full"
    return "ok"


def allocate(m: Model, args: Args) -> dict[str, Any]:
    """agents.allocate → {placements: [{type, agent, load, why}], recommendations: [text]}:
    where the next job of each type would go now (the lowest load score among the agents
    that may take it) or why it would wait; then seed 002's auto-scaling advice."""
    cfg = m.cfg.scheduler
    healths = {a.name: (a, health(cfg, a)) for a in sorted(m.fleet, key=lambda a: a.name)}
    kinds = sorted({c for a in m.fleet for c in a.capabilities}
                   | set(cfg.type_rules) | {cfg.default_type})
    placements = [_placement(m, kind, healths) for kind in kinds]
    return {"placements": placements, "recommendations": _advice(m, placements, healths)}


def _placement(m: Model, kind: str, healths: dict[str, tuple[Agent, str]]) -> dict[str, Any]:
    offering = [(a, h) for a, h in healths.values() if kind in a.capabilities]
    open_agents = [a for a, h in offering if h == "ok"]
    if not open_agents:
        why = ("no agent offers it" if not offering
               else "would wait: " + ", ".join(sorted(f"{a.name} {h}" for a, h in offering)))
        return {"type": kind, "agent": None, "load": None, "why": why}
    best = min(open_agents, key=lambda a: (m.sched.agent_score(a.name), a.name))
    score = m.sched.agent_score(best.name)
    others = len(open_agents) - 1
    why = (f"lowest load score {score:.2f} ({len(best.jobs)}/{best.slots} slots, "
           f"cpu {best.cpu * 100:.0f} %, memory {best.memory * 100:.0f} %)"
           + (f" of {others + 1} open agents" if others else "; the only open agent"))
    return {"type": kind, "agent": best.name, "load": round(score, 4), "why": why}


def _advice(m: Model, placements: list[dict[str, Any]],
            healths: dict[str, tuple[Agent, str]]) -> list[str]:
    """Seed 002's auto-scaling advice: sustained queue growth, types nobody can take,
    idle hosts, hosts over the utilisation ceiling."""
    out = []
    submitted, finished = accounting.flow(m.store.db, time.time() - GROWTH_WINDOW)
    pending = m.sched.pending_count()
    if submitted - finished >= GROWTH_MIN and pending >= GROWTH_MIN:
        out.append(f"scale up: the queue grew by {submitted - finished} in the last "
                   f"{GROWTH_WINDOW / 60:.0f} min ({submitted} submitted, {finished} finished; "
                   f"{pending} pending)")
    waiting = {j.type for j in m.jobs.values() if j.state is JobState.PENDING}
    for p in placements:
        if p["agent"] is None and p["type"] in waiting:
            out.append(f"add capacity for {p['type']!r}: jobs wait and {p['why']}")
    for agent, state in healths.values():
        if state == "over-ceiling":
            out.append(f"{agent.name} is over the utilisation ceiling "
                       f"(cpu {agent.cpu * 100:.0f} %, memory {agent.memory * 100:.0f} %): "
                       "it gets no new jobs; reduce its slots or add a host")
        elif (state == "ok" and not agent.jobs and not pending
              and m.sched.agent_score(agent.name) < IDLE_LOAD):
            out.append(f"{agent.name} is idle: it could be scaled down")
    return out


def drain(m: Model, args: Args) -> dict[str, Any]:
    """agents.drain {name} → agent: it finishes its running jobs and gets no new ones. The
    drain is kept over the agent's reconnects and over broker restarts (in the store)."""
    return _set_draining(m, args, True)


def undrain(m: Model, args: Args) -> dict[str, Any]:
    """agents.undrain {name} → agent: it takes new jobs again."""
    return _set_draining(m, args, False)


def _set_draining(m: Model, args: Args, draining: bool) -> dict[str, Any]:
    name = args.get("name", str)
    if not name:
        raise BadRequest("no agent name given")
    agent = m.fleet.get(name)
    if agent is None:
        known = ", ".join(sorted(a.name for a in m.fleet)) or "none"
        raise NotFound(f"no agent {name!r} (known: {known})")
    m.fleet.drain(agent, draining)
    m.store.set_drained(m.fleet.drained)      # committed with this turn
    m.dirty = True
    log.info("agent %s %s by an operator (%d jobs running)", name,
             "draining" if draining else "undrained", len(agent.jobs))
    m.out.publish_agent("draining" if draining else "undrained", {"name": name})
    return _view(m, agent, time.monotonic())


OPS = {"agents.status": status, "agents.allocate": allocate, "agents.drain": drain,
       "agents.undrain": undrain}
