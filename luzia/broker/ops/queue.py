"""The queue: what `luzia queue status|flush|locks` asks the broker."""

from __future__ import annotations

import heapq
import logging
import time
from collections import Counter
from typing import Any

from luzia.broker import accounting, intake, lifecycle
from luzia.broker.job import Job
from luzia.broker.model import Model
from luzia.broker.ops.request import Args, job_view
from luzia.broker.rules import user_limit
from luzia.errors import BadRequest
from luzia.states import JobState, Priority

log = logging.getLogger(__name__)

SHOWN_MAX = 500            # jobs listed in one reply (a reply must stay under the frame limit)


def status(m: Model, args: Args) -> dict[str, Any]:
    """queue.status {verbose=false, limit=50} → {pending, by_priority: {critical: n, …},
    oldest_wait, by_project: {p: n}, by_user: {u: n}, rejected, rejected_since_start,
    running, rejecting (the queue is full: a submission now is rejected), max_pending,
    jobs?: [job] (verbose: the first `limit` pending jobs in the order they would run)}.
    One pass over the pending jobs; no sort unless verbose."""
    limit = args.limit(50, SHOWN_MAX)
    pending = [j for j in m.jobs.values() if j.state is JobState.PENDING]
    depth = Counter(j.priority for j in pending)     # with jobs waiting out a retry backoff
    oldest = min((j.submitted_at for j in pending), default=None)
    out = {"pending": len(pending),
           "by_priority": {p.label: depth[int(p)] for p in Priority},
           "oldest_wait": round(time.time() - oldest, 3) if oldest else 0.0,
           "by_project": dict(Counter(j.project for j in pending)),
           "by_user": dict(Counter(j.user for j in pending)),
           "running": len(m.jobs) - len(pending),
           "rejected": accounting.count_state(m.store.db, JobState.REJECTED.value),
           "rejected_since_start": m.counters["rejections"],
           "rejecting": intake.queue_full(m), "max_pending": m.cfg.broker.max_pending}
    if args.get("verbose", bool, False):
        out["jobs"] = [job_view(m, j) for j in heapq.nsmallest(limit, pending, key=run_order)]
    return out


def flush(m: Model, args: Args) -> dict[str, Any]:
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
    chosen = sorted((j for j in m.jobs.values() if j.state is JobState.PENDING
                     and all(v is None or getattr(j, k) == v for k, v in filters.items())),
                    key=run_order)
    shown = [job_view(m, j) for j in chosen[:SHOWN_MAX]]
    if not dry_run:
        for job in chosen:
            lifecycle.finish(m, job, JobState.KILLED, "flushed from the queue")
        log.info("queue flushed: %d jobs killed (filters %s)", len(chosen),
                 {k: v for k, v in filters.items() if v is not None})
    return {"dry_run": dry_run, "count": len(chosen), "jobs": shown}


def locks(m: Model, args: Args) -> dict[str, Any]:
    """queue.locks → {per_user, stale_after, locks: [{user, limit, job, project, host,
    since, stale_at, state, waiting}]}: the user locks (seed 004's lock files), one per
    placed job of a user with a limit, oldest first. `state` is "held", "stale" (placed
    longer than `scheduler.user_lock_stale` ago: still running, but its user may start
    another) or "released" (its agent is not beating); `since` the unix time it was
    placed, `stale_at` when the lock goes stale (null when locks never do), `waiting` the
    user's pending jobs."""
    cfg = m.cfg.scheduler
    waiting = Counter(j.user for j in m.jobs.values() if j.state is JobState.PENDING)
    held = {job_id for ids in m.sched.by_user.values() for job_id in ids}
    rows = []
    for job in sorted((j for j in m.jobs.values() if j.id in m.sched.placed),
                      key=lambda j: (j.assigned_at or 0, j.seq)):
        limit = user_limit(cfg, job.user)
        if not limit:
            continue
        agent = m.fleet.get(job.host)
        state = ("held" if job.id in held else "released" if agent is None or not agent.live
                 else "stale")
        since = job.assigned_at
        stale_at = since + cfg.user_lock_stale if since and cfg.user_lock_stale > 0 else None
        rows.append({"user": job.user, "limit": limit, "job": job.id, "project": job.project,
                     "host": job.host, "since": since, "stale_at": stale_at, "state": state,
                     "waiting": waiting[job.user]})
    return {"per_user": cfg.per_user, "stale_after": cfg.user_lock_stale, "locks": rows}


def run_order(job: Job) -> tuple[int, int]:
    """Priority, then arrival: the order the scheduler considers pending jobs."""
    return job.priority, job.seq


OPS = {"queue.status": status, "queue.flush": flush, "queue.locks": locks}
