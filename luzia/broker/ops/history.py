"""Finished jobs and their accounting: `luzia history` and `luzia stats` (what Slurm's
sacct reports), read from the store."""

from __future__ import annotations

from typing import Any

from luzia.broker import accounting
from luzia.broker.model import Model
from luzia.broker.ops.request import Args
from luzia.errors import BadRequest
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
    """stats {since, user, project, days} → {by_user: [row], by_submitter: [row],
    by_project: [row], by_agent: [agent row], total: row, by_day?: [row + {day}]}; a row
    is {name, jobs, completed, failed, killed, rejected, run_seconds, mean_wait, mean_run,
    cost_usd, tokens_in, tokens_out, cache_read, cache_write} over finished jobs (one GROUP
    BY in SQLite; submitter "-": none recorded), an agent row {name, jobs, attempts,
    completed, failed, run_seconds, mean_run, cost_usd, tokens_in, tokens_out, cache_read,
    cache_write} over the attempts that ended on that agent (cost and tokens:
    docs/AGENTS.md); with `days` (1–366), `by_day` has one row per day (YYYY-MM-DD, the
    broker's local time) of the last `days` days, oldest first, days
    without a finished job included."""
    since = args.get("since", (int, float))
    where = {"user": args.get("user", str), "project": args.get("project", str)}
    out = accounting.breakdown(m.store.db, since, where)
    out["by_agent"] = accounting.by_host(m.store.db, since, where)
    days = args.get("days", int)
    if days is not None:
        if not 0 < days <= 366:
            raise BadRequest("days must be between 1 and 366")
        out["by_day"] = accounting.by_day(m.store.db, days, where)
    return out


OPS = {"history": history, "stats": stats}
