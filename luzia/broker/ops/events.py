"""events.since: the broker's events table read from a cursor, for a client that must not
miss a job's end while it was away (luzia-notify, docs/NOTIFY.md). PUB events are lossy by
design (a subscriber that is down or slow misses them); the table is what was committed."""

from __future__ import annotations

from typing import Any

from luzia.broker.model import Model
from luzia.broker.ops.request import Args
from luzia.errors import BadRequest
from luzia.states import JOB_EVENT_NAMES

PAGE_MAX = 1000
_KEYS = ("seq", "at", "job_id", "state", "detail", "project", "user")


def since(m: Model, args: Args) -> dict[str, Any]:
    """events.since {after=0, states=[..], limit=100 (≤ 1000)} → {events: [{seq, at, job_id,
    state, detail, project, user}], last, more}: the job events after row `after`, oldest
    first, of the given states (all without `states`; `states=[]`, or only states this
    broker does not have, give none and just `last`); `needs-input` is a state here: a
    running job began to wait for a person. `last` is where to go on from: the
    last row read when `more`, else the table's high-water mark (rows of other states
    included, so a cursor moves past them). A job's rows go when the job is pruned
    (max_jobs)."""
    after = args.get("after", int, 0)
    limit = args.limit(100, PAGE_MAX)
    if after < 0:
        raise BadRequest("after must be >= 0")
    states = [s for s in args.strings("states") if s in JOB_EVENT_NAMES]
    if "states" in args.args and not states:    # none asked for (or none this broker has)
        return {"events": [], "last": _high_water(m), "more": False}
    where = f" AND e.state IN ({', '.join('?' * len(states))})" if states else ""
    rows = m.store.db.execute(
        "SELECT e.seq, e.at, e.job_id, e.state, e.detail, j.project, j.user FROM events e"
        f" LEFT JOIN jobs j ON j.id = e.job_id WHERE e.seq > ?{where} ORDER BY e.seq LIMIT ?",
        (after, *states, limit + 1)).fetchall()
    more = len(rows) > limit
    events = [dict(zip(_KEYS, r, strict=True)) for r in rows[:limit]]
    return {"events": events, "last": events[-1]["seq"] if more else _high_water(m), "more": more}


def _high_water(m: Model) -> int:
    """The highest events row ever written (it never goes back, even when the newest rows
    were pruned: store.EVENTS_MARK)."""
    return m.store.events_high_water()


OPS = {"events.since": since}
