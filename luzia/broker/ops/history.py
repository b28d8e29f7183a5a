"""Finished jobs and their accounting: `luzia history` and `luzia stats` (what Slurm's
sacct reports), read from the store."""

from __future__ import annotations

from typing import Any

from luzia.broker import accounting
from luzia.broker.model import Model
from luzia.broker.ops.request import Args
from luzia.states import TERMINAL_NAMES

SHOWN_MAX = 500


def history(m: Model, args: Args) -> list[dict[str, Any]]:
    """history {user, project, since, limit=50} → [job] finished jobs newest first, each
    with `wait` and `run` seconds (what sacct lists)."""
    limit = args.limit(50, SHOWN_MAX)
    jobs = m.store.recent(limit=limit, states=sorted(TERMINAL_NAMES),
                        project=args.get("project", str), user=args.get("user", str),
                        since=args.get("since", (int, float)))
    out = []
    for job in jobs:
        row = job.to_dict()
        row["wait"] = accounting.span(job.submitted_at, job.started_at)
        row["run"] = accounting.span(job.started_at, job.finished_at)
        out.append(row)
    return out


def stats(m: Model, args: Args) -> dict[str, Any]:
    """stats {since, user, project} → {by_user: [row], by_project: [row], total: row}; a row
    is {name, jobs, completed, failed, killed, rejected, run_seconds, mean_wait, mean_run}
    over finished jobs (one GROUP BY each in SQLite)."""
    since = args.get("since", (int, float))
    where = {"user": args.get("user", str), "project": args.get("project", str)}
    return {"by_user": accounting.totals(m.store.db, "user", since, where),
            "by_project": accounting.totals(m.store.db, "project", since, where),
            "total": accounting.totals(m.store.db, None, since, where)[0]}


OPS = {"history": history, "stats": stats}
