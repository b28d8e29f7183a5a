"""Job accounting from the SQLite store (what Slurm's sacct reports): jobs, run time,
failures, mean wait, and the agents' cost and tokens (docs/AGENTS.md) per user, project,
day or agent, each answered by one GROUP BY query.

Finished jobs only; the table holds at most `max_jobs` of them (the broker prunes), and
the indexes on finished_at and submitted_at (made here if missing) keep `since` cheap.
"""

from __future__ import annotations

import datetime
import sqlite3
import time
from typing import Any

from luzia.states import TERMINAL_NAMES

COLUMNS = ("jobs", "completed", "failed", "killed", "rejected", "run_seconds", "mean_wait",
           "mean_run", "cost_usd", "tokens_in", "tokens_out", "cache_read", "cache_write")
_USAGE_SUMS = ("COALESCE(SUM(cost_usd), 0), SUM(tokens_in), SUM(tokens_out), SUM(cache_read), "
               "SUM(cache_write)")
_ZERO = ("all", 0, 0, 0, 0, 0, 0, None, None, 0, 0, 0, 0, 0)

_SELECT = """
SELECT {group} AS name, COUNT(*),
       SUM(state = 'completed'), SUM(state = 'failed'), SUM(state = 'killed'),
       SUM(state = 'rejected'),
       COALESCE(SUM(CASE WHEN started_at IS NOT NULL THEN finished_at - started_at END), 0),
       AVG(CASE WHEN started_at IS NOT NULL THEN started_at - submitted_at END),
       AVG(CASE WHEN started_at IS NOT NULL THEN finished_at - started_at END),
       """ + _USAGE_SUMS + """
FROM {source} WHERE state IN ({terminal}) {where}
{group_by}
"""
_TERMINAL = ", ".join(f"'{name}'" for name in sorted(TERMINAL_NAMES))


def count_state(db: sqlite3.Connection, state: str) -> int:
    """Jobs in `state` (the store's state index answers it)."""
    return db.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (state,)).fetchone()[0]


RECENT = 86400.0            # seconds: a `since` this recent is answered through the index
DAY = "date(finished_at, 'unixepoch', 'localtime')"
SUBMITTER = "COALESCE(submitter, '-')"     # '-': not recorded (older jobs, tcp without CURVE)


def totals(db: sqlite3.Connection, group: str | None, since: float | None,
           where: dict[str, str | None]) -> list[dict[str, Any]]:
    """Rows per `group` ("user", "project", SUBMITTER or DAY), or one overall row when
    `group` is None."""
    if group not in (None, "user", "project", SUBMITTER, DAY):
        raise ValueError(f"cannot group by {group!r}")
    clauses, params = _clauses(since, where)
    sql = _SELECT.format(group=group or "'all'", terminal=_TERMINAL, source=_source(since),
                         where="".join(f" AND {c}" for c in clauses),
                         group_by=f"GROUP BY {group} ORDER BY {group}" if group else "")
    rows = db.execute(sql, params).fetchall()
    return [_row(r) for r in rows if r[1]] or ([] if group else [_row(_ZERO)])


def _source(since: float | None) -> str:
    """A window longer than a day is most of a long history: one plain scan of the table
    beats looking each row up through the state or finished_at index."""
    recent = since is not None and since > time.time() - RECENT
    return "jobs" if recent else "jobs NOT INDEXED"


def _clauses(since: float | None, where: dict[str, str | None], finished: str = "finished_at",
             table: str = "") -> tuple[list[str], list[Any]]:
    """The WHERE clauses and parameters of `since` (on the `finished` column) and the
    `where` filters (columns of `table`, an alias with its dot, e.g. "j.")."""
    clauses: list[str] = []
    params: list[Any] = []
    if since:
        clauses.append(f"{finished} >= ?")
        params.append(since)
    for column, value in where.items():
        if value:
            clauses.append(f"{table}{column} = ?")
            params.append(value)
    return clauses, params


def _row(r: tuple) -> dict[str, Any]:
    out: dict[str, Any] = {"name": r[0]}
    for key, value in zip(COLUMNS, r[1:], strict=True):
        out[key] = round(value, 3) if isinstance(value, float) else (value or 0)
    return out


_PARTS = """
SELECT user, project, COALESCE(submitter, '-'), COUNT(*),
       SUM(state = 'completed'), SUM(state = 'failed'), SUM(state = 'killed'),
       SUM(state = 'rejected'),
       COALESCE(SUM(CASE WHEN started_at IS NOT NULL THEN finished_at - started_at END), 0),
       COALESCE(SUM(CASE WHEN started_at IS NOT NULL THEN started_at - submitted_at END), 0),
       COUNT(started_at),
       """ + _USAGE_SUMS + """
FROM {source} WHERE state IN ({terminal}) {where}
GROUP BY user, project, submitter
"""


def breakdown(db: sqlite3.Connection, since: float | None,
              where: dict[str, str | None]) -> dict[str, Any]:
    """{by_user: [row], by_submitter: [row], by_project: [row], total: row}, as `totals`
    gives them, from one scan: sums per (user, project, submitter), added up here (a long
    history is one pass, not four)."""
    clauses, params = _clauses(since, where)
    sql = _PARTS.format(source=_source(since), terminal=_TERMINAL,
                        where="".join(f" AND {c}" for c in clauses))
    sums: dict[str, dict[str, list[float]]] = {"user": {}, "submitter": {}, "project": {},
                                               "total": {}}
    for user, project, submitter, *values in db.execute(sql, params):
        for kind, name in (("user", user), ("submitter", submitter), ("project", project),
                           ("total", "all")):
            acc = sums[kind].setdefault(name, [0] * len(values))
            for i, value in enumerate(values):
                acc[i] += value or 0

    def rows(kind: str) -> list[dict[str, Any]]:
        return [_summed(name, acc) for name, acc in sorted(sums[kind].items())]
    return {"by_user": rows("user"), "by_submitter": rows("submitter"),
            "by_project": rows("project"),
            "total": rows("total")[0] if sums["total"] else _row(_ZERO)}


def _summed(name: str, acc: list[float]) -> dict[str, Any]:
    """A totals row from sums: jobs, completed, failed, killed, rejected, run, wait, started,
    then the usage sums."""
    *counts, run, wait, started = acc[:8]
    return _row((name, *counts, run, wait / started if started else None,
                 run / started if started else None, *acc[8:]))


def by_day(db: sqlite3.Connection, days: int, where: dict[str, str | None]) -> list[dict[str, Any]]:
    """One row per day (`day`: YYYY-MM-DD, local time) of the last `days` days, oldest first;
    a day without a finished job has a row of zeros."""
    today = datetime.date.today()
    first = today - datetime.timedelta(days=days - 1)
    since = time.mktime(first.timetuple())
    found = {r["name"]: r for r in totals(db, DAY, since, where)}
    out = []
    for n in range(days):
        day = (first + datetime.timedelta(days=n)).isoformat()
        row = found.get(day) or _row((day, *_ZERO[1:]))
        row["day"] = row.pop("name")
        out.append(row)
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


AGENT_COLUMNS = ("jobs", "attempts", "completed", "failed", "run_seconds", "mean_run",
                 "cost_usd", "tokens_in", "tokens_out", "cache_read", "cache_write")

_BY_HOST = """
SELECT a.host, COUNT(DISTINCT a.job_id), COUNT(*), SUM(a.exit_code = 0),
       SUM(a.exit_code != 0 AND a.reason != 'cancelled' AND a.reason NOT LIKE 'preempted by %'
           AND a.reason NOT LIKE 'usage limit: %'),
       COALESCE(SUM(a.finished_at - a.started_at), 0), AVG(a.finished_at - a.started_at),
       COALESCE(SUM(a.cost_usd), 0), SUM(a.tokens_in), SUM(a.tokens_out), SUM(a.cache_read),
       SUM(a.cache_write)
FROM attempts a JOIN jobs j ON j.id = a.job_id
WHERE a.finished_at IS NOT NULL AND a.host != '' {where}
GROUP BY a.host ORDER BY a.host
"""


def by_host(db: sqlite3.Connection, since: float | None,
            where: dict[str, str | None]) -> list[dict[str, Any]]:
    """Per agent, over the attempts that ended there (a job retried elsewhere counts on each
    host it ran on): jobs, attempts, completed (exit 0), failed (any other exit but a
    cancel, a preemption or a usage limit), run seconds, mean run, and the agents' cost
    and tokens (docs/AGENTS.md; a paused attempt's too). One GROUP BY."""
    clauses, params = _clauses(since, where, "a.finished_at", "j.")
    rows = db.execute(_BY_HOST.format(where="".join(f" AND {c}" for c in clauses)), params)
    return [{"name": r[0], **{k: round(v, 3) if isinstance(v, float) else (v or 0)
                              for k, v in zip(AGENT_COLUMNS, r[1:], strict=True)}}
            for r in rows]
