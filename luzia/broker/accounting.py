"""Job accounting from the SQLite store (what Slurm's sacct reports): jobs, run time,
failures and mean wait per user or project, each answered by one GROUP BY query.

Finished jobs only; the table holds at most `max_jobs` of them (the broker prunes), and
the indexes on finished_at and submitted_at (made here if missing) keep `since` cheap.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from luzia.states import TERMINAL_NAMES

COLUMNS = ("jobs", "completed", "failed", "killed", "rejected", "run_seconds", "mean_wait",
           "mean_run")

_SELECT = """
SELECT {group} AS name, COUNT(*),
       SUM(state = 'completed'), SUM(state = 'failed'), SUM(state = 'killed'),
       SUM(state = 'rejected'),
       COALESCE(SUM(CASE WHEN started_at IS NOT NULL THEN finished_at - started_at END), 0),
       AVG(CASE WHEN started_at IS NOT NULL THEN started_at - submitted_at END),
       AVG(CASE WHEN started_at IS NOT NULL THEN finished_at - started_at END)
FROM jobs WHERE state IN ({terminal}) {where}
{group_by}
"""
_TERMINAL = ", ".join(f"'{name}'" for name in sorted(TERMINAL_NAMES))


def count_state(db: sqlite3.Connection, state: str) -> int:
    """Jobs in `state` (the store's state index answers it)."""
    return db.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (state,)).fetchone()[0]


def totals(db: sqlite3.Connection, group: str | None, since: float | None,
           where: dict[str, str | None]) -> list[dict[str, Any]]:
    """Rows per `group` ("user" or "project"), or one overall row when `group` is None."""
    if group not in (None, "user", "project"):
        raise ValueError(f"cannot group by {group!r}")
    clauses: list[str] = []
    params: list[Any] = []
    if since:
        clauses.append("finished_at >= ?")
        params.append(since)
    for column, value in where.items():
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    sql = _SELECT.format(group=group or "'all'", terminal=_TERMINAL,
                         where="".join(f" AND {c}" for c in clauses),
                         group_by=f"GROUP BY {group} ORDER BY {group}" if group else "")
    rows = db.execute(sql, params).fetchall()
    return [_row(r) for r in rows if r[1]] or ([] if group else [_row(("all", 0, 0, 0, 0, 0, 0, None, None))])


def _row(r: tuple) -> dict[str, Any]:
    out: dict[str, Any] = {"name": r[0]}
    for key, value in zip(COLUMNS, r[1:], strict=True):
        out[key] = round(value, 3) if isinstance(value, float) else (value or 0)
    return out


def flow(db: sqlite3.Connection, since: float) -> tuple[int, int]:
    """(jobs submitted, jobs finished) since the wall-clock time `since`."""
    submitted = db.execute("SELECT COUNT(*) FROM jobs WHERE submitted_at >= ?", (since,)).fetchone()[0]
    finished = db.execute("SELECT COUNT(*) FROM jobs WHERE finished_at >= ?", (since,)).fetchone()[0]
    return submitted, finished


def span(start: float | None, end: float | None) -> float | None:
    """Seconds from `start` to `end`, None when either is unknown."""
    if start is None or end is None:
        return None
    return round(max(0.0, end - start), 3)
