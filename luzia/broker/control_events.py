"""events.since: the broker's events table read from a cursor, for a client that must not
miss a job's end while it was away (luzia-notify). PUB events are lossy by design (a
subscriber that is down or slow misses them); the table is what the broker committed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from luzia.errors import BadRequest
from luzia.states import JOB_STATE_NAMES

if TYPE_CHECKING:
    from luzia.broker.control import _Args
    from luzia.broker.server import Broker

PAGE_MAX = 1000


def op_events_since(b: Broker, args: _Args, **_: Any) -> dict[str, Any]:
    """events.since {after=0, states=[..], limit=100 (≤ 1000)} → {events: [{seq, at, job_id,
    state, detail, project, user}], last, more}: the job events after row `after`, oldest
    first, of the given states (all if none). `last` is where to go on from: the last row
    read when `more`, else the table's high-water mark (rows of other states included, so a
    cursor moves past them). Rows of pruned jobs are gone with them (broker max_jobs)."""
    after = args.get("after", int, 0)
    limit = args.get("limit", int, 100)
    states = args.strings("states")
    if after < 0 or not 0 < limit <= PAGE_MAX:
        raise BadRequest(f"after must be >= 0 and limit between 1 and {PAGE_MAX}")
    if states:    # a state this broker does not have (yet) has no rows: not an error
        states = [s for s in states if s in JOB_STATE_NAMES]
        if not states:
            return {"events": [], "last": _high_water(b), "more": False}
    where = f" AND e.state IN ({', '.join('?' * len(states))})" if states else ""
    rows = b.store.db.execute(
        "SELECT e.seq, e.at, e.job_id, e.state, e.detail, j.project, j.user FROM events e"
        f" LEFT JOIN jobs j ON j.id = e.job_id WHERE e.seq > ?{where} ORDER BY e.seq LIMIT ?",
        (after, *states, limit + 1)).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    keys = ("seq", "at", "job_id", "state", "detail", "project", "user")
    events = [dict(zip(keys, r, strict=True)) for r in rows]
    return {"events": events, "last": events[-1]["seq"] if more else _high_water(b), "more": more}


def _high_water(b: Broker) -> int:
    """The highest events row ever written (AUTOINCREMENT's mark: never goes back, even when
    the newest rows were pruned)."""
    row = b.store.db.execute("SELECT seq FROM sqlite_sequence WHERE name='events'").fetchone()
    return int(row[0]) if row else 0


OPS = {"events.since": op_events_since}
