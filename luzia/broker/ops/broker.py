"""The broker itself: `luzia ping`-style liveness, `luzia status`, and who the caller is."""

from __future__ import annotations

import os
import time
from typing import Any

from luzia import __version__
from luzia.broker.model import Model
from luzia.broker.ops.request import Args
from luzia.states import JobState, Priority


def ping(m: Model, args: Args) -> dict[str, Any]:
    """ping → {pid, version, uptime, name}: liveness check (the supervisor's health ping)."""
    return {"pid": os.getpid(), "version": __version__,
            "uptime": round(time.monotonic() - m.started, 3), "name": "broker"}


def status(m: Model, args: Args) -> dict[str, Any]:
    """status → {agents: [agent], queue: {pending, by_priority: {critical: n, …},
    oldest_wait}, jobs: {state: n}, bad_frames: {socket: n}, submissions, duplicates,
    rejections, uptime}."""
    now = time.monotonic()
    by_priority = {Priority(p).label: n for p, n in sorted(m.sched.pending_by_priority().items())}
    oldest = min((j.submitted_at for j in m.jobs.values() if j.state is JobState.PENDING),
                 default=None)
    return {
        "agents": [a.to_dict(now, m.sched.agent_score(a.name)) for a in m.fleet],
        "queue": {"pending": m.sched.pending_count(), "by_priority": by_priority,
                  "oldest_wait": round(time.time() - oldest, 3) if oldest else 0.0},
        "jobs": m.store.counts(),
        "bad_frames": {name: bad.count for name, bad in m.bad.items()},
        **m.counters,
        "uptime": round(now - m.started, 3),
    }


def whoami(m: Model, args: Args) -> dict[str, Any]:
    """whoami → {user, admin}: who the broker takes the caller for — the Unix user of an ipc
    connection, the user of a CURVE key (its file in keys/authorized/), null when it cannot
    tell — and whether that user is an admin (may submit jobs as anyone: `admins`)."""
    peer = args.peer
    return {"user": peer.name if peer else None, "admin": bool(peer and peer.admin)}


OPS = {"ping": ping, "status": status, "whoami": whoami}
