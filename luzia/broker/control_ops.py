"""Operator control operations: what `luzia queue`, `luzia agents`, `luzia history`,
`luzia stats`, `luzia top` and `luzia import` ask the broker.

Same contract as luzia/broker/control.py (whose OPS this module's OPS is merged into):
`op_<name>(broker, args) -> result`, the docstring is the protocol documentation, a
UsageError becomes a `bad_request` reply. Everything here reads the broker's in-memory
model or the store; only queue.flush and agents.drain/undrain change anything.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable

from luzia.broker import accounting
from luzia.broker.control import _Args, job_dict
from luzia.errors import BadRequest, NotFound
from luzia.states import AgentState, JobState, Priority

if TYPE_CHECKING:
    from luzia.broker.fleet import Agent
    from luzia.broker.server import Broker

log = logging.getLogger(__name__)

IDS_MAX = 10_000
SHOWN_MAX = 500            # jobs listed in one reply (a reply must stay under the frame limit)
GROWTH_WINDOW = 300.0      # seconds looked back for "sustained queue growth"
GROWTH_MIN = 10            # net growth over the window worth a recommendation
IDLE_LOAD = 0.20           # a live agent with no job and a load score below this is idle


# ---------------------------------------------------------------------------
# queue


def op_queue_status(b: "Broker", args: _Args, **_: Any) -> dict[str, Any]:
    """queue.status {verbose=false, limit=50} → {pending, by_priority: {critical: n, …},
    oldest_wait, by_project: {p: n}, by_user: {u: n}, rejected, rejected_since_start,
    running, jobs?: [job] (verbose: the first `limit` pending jobs in the order they would
    run)}. One pass over the pending jobs; no sort unless verbose."""
    limit = args.get("limit", int, 50)
    if not 0 < limit <= SHOWN_MAX:
        raise BadRequest(f"limit must be between 1 and {SHOWN_MAX}")
    pending = [j for j in b.jobs.values() if j.state is JobState.PENDING]
    depth = Counter(j.priority for j in pending)     # with jobs waiting out a retry backoff
    oldest = min((j.submitted_at for j in pending), default=None)
    out = {"pending": len(pending),
           "by_priority": {p.label: depth[int(p)] for p in Priority},
           "oldest_wait": round(time.time() - oldest, 3) if oldest else 0.0,
           "by_project": dict(Counter(j.project for j in pending)),
           "by_user": dict(Counter(j.user for j in pending)),
           "running": len(b.jobs) - len(pending),
           "rejected": accounting.count_state(b.store.db, JobState.REJECTED.value),
           "rejected_since_start": b.counters["rejections"]}
    if args.get("verbose", bool, False):
        out["jobs"] = [job_dict(b, j) for j in heapq.nsmallest(limit, pending, key=_run_order)]
    return out


def op_queue_flush(b: "Broker", args: _Args, **_: Any) -> dict[str, Any]:
    """queue.flush {project, user, priority, type, dry_run=false} → {dry_run, count, jobs:
    [job]}: the pending jobs matching every given filter (`count`; the first SHOWN_MAX of
    them listed), in the order they would have run; unless dry_run they are killed with
    reason "flushed from the queue"."""
    filters = {name: args.get(name, str) for name in ("project", "user", "priority", "type")}
    if filters["priority"] is not None:
        try:
            filters["priority"] = int(Priority.parse(filters["priority"]))
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
    dry_run = args.get("dry_run", bool, False)
    chosen = sorted((j for j in b.jobs.values() if j.state is JobState.PENDING
                     and all(v is None or getattr(j, k) == v for k, v in filters.items())),
                    key=_run_order)
    shown = [job_dict(b, j) for j in chosen[:SHOWN_MAX]]
    if not dry_run:
        for job in chosen:
            b.finish(job, JobState.KILLED, "flushed from the queue")
        log.info("queue flushed: %d jobs killed (filters %s)", len(chosen),
                 {k: v for k, v in filters.items() if v is not None})
    return {"dry_run": dry_run, "count": len(chosen), "jobs": shown}


def _run_order(job: Any) -> tuple[int, int]:
    """Priority, then arrival: the order the scheduler considers pending jobs."""
    return job.priority, job.seq


# ---------------------------------------------------------------------------
# agents


def op_agents_status(b: "Broker", args: _Args, **_: Any) -> list[dict[str, Any]]:
    """agents.status → [agent + {health, draining, load_parts: {cpu, memory, queue},
    heartbeat_age}]: one entry per agent the broker knows, by name."""
    now = time.monotonic()
    return [_agent_view(b, a, now) for a in sorted(b.fleet, key=lambda a: a.name)]


def _agent_view(b: "Broker", agent: "Agent", now: float) -> dict[str, Any]:
    cfg = b.cfg.scheduler
    out = agent.to_dict(now, round(b.sched.agent_score(agent.name), 4))
    queue = len(agent.jobs) / max(1, agent.slots)
    out["load_parts"] = {"cpu": round(cfg.weight_cpu * agent.cpu, 4),
                         "memory": round(cfg.weight_memory * agent.memory, 4),
                         "queue": round(cfg.weight_queue * queue, 4)}
    out["draining"] = agent.draining
    out["health"] = health(b, agent)
    out["heartbeat_age"] = out["last_seen"]
    return out


def health(b: "Broker", agent: "Agent") -> str:
    """ok | draining | over-ceiling | full | dead: the first thing that keeps work off it."""
    cfg = b.cfg.scheduler
    if agent.state is AgentState.DEAD:
        return "dead"
    if agent.draining:
        return "draining"
    if agent.cpu > cfg.cpu_ceiling or agent.memory > cfg.memory_ceiling:
        return "over-ceiling"
    if len(agent.jobs) >= agent.slots:
        return "full"
    return "ok"


def op_agents_allocate(b: "Broker", args: _Args, **_: Any) -> dict[str, Any]:
    """agents.allocate → {placements: [{type, agent, load, why}], recommendations: [text]}:
    where the next job of each type would go now (the lowest load score among the agents
    that may take it) or why it would wait; then seed 002's auto-scaling advice."""
    kinds = sorted({c for a in b.fleet for c in a.capabilities}
                   | set(b.cfg.scheduler.type_rules) | {b.cfg.scheduler.default_type})
    placements = [_placement(b, kind) for kind in kinds]
    return {"placements": placements, "recommendations": recommendations(b, placements)}


def _placement(b: "Broker", kind: str) -> dict[str, Any]:
    open_agents = [a for a in b.fleet if kind in a.capabilities and health(b, a) == "ok"]
    if not open_agents:
        offering = [f"{a.name} {health(b, a)}" for a in b.fleet if kind in a.capabilities]
        why = ("no agent offers it" if not offering else "would wait: " + ", ".join(sorted(offering)))
        return {"type": kind, "agent": None, "load": None, "why": why}
    best = min(open_agents, key=lambda a: (b.sched.agent_score(a.name), a.name))
    score = b.sched.agent_score(best.name)
    others = len(open_agents) - 1
    why = (f"lowest load score {score:.2f} ({len(best.jobs)}/{best.slots} slots, "
           f"cpu {best.cpu * 100:.0f} %, memory {best.memory * 100:.0f} %)"
           + (f" of {others + 1} open agents" if others else "; the only open agent"))
    return {"type": kind, "agent": best.name, "load": round(score, 4), "why": why}


def recommendations(b: "Broker", placements: list[dict[str, Any]]) -> list[str]:
    """Seed 002's auto-scaling advice: sustained queue growth, types nobody can take,
    idle hosts, hosts over the utilisation ceiling."""
    out = []
    submitted, finished = accounting.flow(b.store.db, time.time() - GROWTH_WINDOW)
    pending = b.sched.pending_count()
    if submitted - finished >= GROWTH_MIN and pending >= GROWTH_MIN:
        out.append(f"scale up: the queue grew by {submitted - finished} in the last "
                   f"{GROWTH_WINDOW / 60:.0f} min ({submitted} submitted, {finished} finished; "
                   f"{pending} pending)")
    waiting = {j.type for j in b.jobs.values() if j.state is JobState.PENDING}
    for p in placements:
        if p["agent"] is None and p["type"] in waiting:
            out.append(f"add capacity for {p['type']!r}: jobs wait and {p['why']}")
    for agent in sorted(b.fleet, key=lambda a: a.name):
        state = health(b, agent)
        if state == "over-ceiling":
            out.append(f"{agent.name} is over the utilisation ceiling (cpu {agent.cpu * 100:.0f} %, "
                       f"memory {agent.memory * 100:.0f} %): it gets no new jobs; reduce its slots "
                       "or add a host")
        elif (state == "ok" and not agent.jobs and not pending
              and b.sched.agent_score(agent.name) < IDLE_LOAD):
            out.append(f"{agent.name} is idle: it could be scaled down")
    return out


def op_agents_drain(b: "Broker", args: _Args, **_: Any) -> dict[str, Any]:
    """agents.drain {name} → agent: it finishes its running jobs and gets no new ones
    (kept over the agent's reconnects; a broker restart forgets it)."""
    return _set_draining(b, args, True)


def op_agents_undrain(b: "Broker", args: _Args, **_: Any) -> dict[str, Any]:
    """agents.undrain {name} → agent: it takes new jobs again."""
    return _set_draining(b, args, False)


def _set_draining(b: "Broker", args: _Args, draining: bool) -> dict[str, Any]:
    name = args.get("name", str)
    if not name:
        raise BadRequest("no agent name given")
    agent = b.fleet.get(name)
    if agent is None:
        known = ", ".join(sorted(a.name for a in b.fleet)) or "none"
        raise NotFound(f"no agent {name!r} (known: {known})")
    agent.draining = draining
    b.sched.set_draining(name, draining)
    b.drained = b.drained | {name} if draining else b.drained - {name}
    b.store.set_drained(b.drained)      # committed with this turn
    b.dirty = True
    log.info("agent %s %s by an operator (%d jobs running)", name,
             "draining" if draining else "undrained", len(agent.jobs))
    view = _agent_view(b, agent, time.monotonic())
    b.publish_agent("draining" if draining else "undrained", {"name": name})
    return view


# ---------------------------------------------------------------------------
# history and accounting


def op_history(b: "Broker", args: _Args, **_: Any) -> list[dict[str, Any]]:
    """history {user, project, since, limit=50} → [job] finished jobs newest first, each
    with `wait` and `run` seconds (what sacct lists)."""
    limit = args.get("limit", int, 50)
    if not 0 < limit <= SHOWN_MAX:
        raise BadRequest(f"limit must be between 1 and {SHOWN_MAX}")
    terminal = [s.value for s in JobState if s.terminal]
    jobs = b.store.list(limit=limit, states=terminal, project=args.get("project", str),
                        user=args.get("user", str), since=args.get("since", (int, float)))
    out = []
    for job in jobs:
        row = job.to_dict()
        row["wait"] = accounting.span(job.submitted_at, job.started_at)
        row["run"] = accounting.span(job.started_at, job.finished_at)
        out.append(row)
    return out


def op_stats(b: "Broker", args: _Args, **_: Any) -> dict[str, Any]:
    """stats {since, user, project, days} → {by_user: [row], by_project: [row], total: row,
    by_day?: [row + {day}]}; a row is {name, jobs, completed, failed, killed, rejected,
    run_seconds, mean_wait, mean_run} over finished jobs (one GROUP BY each in SQLite);
    with `days` (1–366), `by_day` has one row per day (YYYY-MM-DD, the broker's local time)
    of the last `days` days, oldest first, days without a finished job included."""
    since = args.get("since", (int, float))
    where = {"user": args.get("user", str), "project": args.get("project", str)}
    out = {"by_user": accounting.totals(b.store.db, "user", since, where),
           "by_project": accounting.totals(b.store.db, "project", since, where),
           "total": accounting.totals(b.store.db, None, since, where)[0]}
    days = args.get("days", int)
    if days is not None:
        if not 0 < days <= 366:
            raise BadRequest("days must be between 1 and 366")
        out["by_day"] = accounting.by_day(b.store.db, days, where)
    return out


def op_jobs_exist(b: "Broker", args: _Args, **_: Any) -> dict[str, str]:
    """jobs.exist {ids} → {id: state}: those of `ids` the broker has, with their state;
    importers use it to report what an earlier run took (and what became of it)."""
    ids = args.strings("ids")
    if len(ids) > IDS_MAX:
        raise BadRequest(f"at most {IDS_MAX} ids per request")
    live = {i: b.jobs[i].state.value for i in ids if i in b.jobs}
    stored = b.store.states_of([i for i in ids if i not in live])
    return {**live, **{i: state.value for i, state in stored.items()}}


OPS: dict[str, Callable[..., Any]] = {
    name[3:].replace("_", "."): fn for name, fn in list(globals().items())
    if name.startswith("op_") and callable(fn)
}
