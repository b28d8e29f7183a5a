"""Control operations: what `luzia jobs`, `luzia logs`, `luzia cancel` … ask the broker.

Each operation is a function `op_<name>(broker, args) -> result` whose docstring is its
protocol documentation. A Request names the op (dots become underscores: `jobs.get` →
`op_jobs_get`); the Reply carries the result, or an error line and a code
(`bad_request`, `not_found`, `ambiguous`, `unavailable`, `internal`).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from luzia import __version__, protocol, rpc
from luzia.errors import Ambiguous, BadRequest, LuziaError, NotFound, Unavailable
from luzia.ids import JOB_PREFIX_RE
from luzia.states import JobState, Priority

if TYPE_CHECKING:
    from luzia.broker.server import Broker
    from luzia.broker.store import Job

log = logging.getLogger(__name__)

DEFERRED = object()          # the reply is sent later (logs.read waits for the agent)
LIST_MAX = 10_000
LOG_WAIT = 2.0               # seconds a logs.read waits for the agent before using the tail


@dataclass
class LogWait:
    identity: bytes
    req: int
    job_id: str
    deadline: float


def handle(broker: "Broker", identity: bytes, req: protocol.Request) -> None:
    """Answer one request; the reply is sent after the turn's commit (DEFERRED: later)."""
    fn: Callable[..., Any] | None = OPS.get(req.op)
    try:
        if fn is None:
            raise BadRequest(f"unknown operation {req.op!r}; known: {', '.join(sorted(OPS))}")
        result = fn(broker, _Args(req.args), identity=identity, req=req.req)
    except LuziaError as exc:
        broker.reply(identity, rpc.failure(req.req, exc))
        return
    if result is not DEFERRED:
        broker.reply(identity, protocol.Reply(req=req.req, ok=True, result=result))


class _Args:
    """Typed access to a request's args; a wrong type is a bad_request, not a crash."""

    def __init__(self, args: dict[str, Any]) -> None:
        self.args = args

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        value = self.args.get(name, default)
        if value is None or value is default:
            return value
        if isinstance(value, bool) and kind is not bool:
            raise BadRequest(f"argument {name!r} has the wrong type")
        if not isinstance(value, kind):
            raise BadRequest(f"argument {name!r} has the wrong type")
        return value

    def strings(self, name: str) -> list[str]:
        value = self.args.get(name) or []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadRequest(f"argument {name!r} must be a list of strings")
        return value


# ---------------------------------------------------------------------------
# operations


def op_ping(b: "Broker", args: _Args, **_: Any) -> dict[str, Any]:
    """ping → {pid, version, uptime, name}: liveness check (the supervisor's health ping)."""
    import os
    return {"pid": os.getpid(), "version": __version__, "uptime": round(b.uptime(), 3),
            "name": "broker"}


def op_status(b: "Broker", args: _Args, **_: Any) -> dict[str, Any]:
    """status → {agents, queue: {pending, by_priority, oldest_wait}, jobs, bad_frames, …}."""
    now = time.monotonic()
    by_priority = {Priority(p).label: n for p, n in sorted(b.sched.pending_by_priority().items())}
    pending = [j for j in b.jobs.values() if j.state is JobState.PENDING]
    oldest = min((j.submitted_at for j in pending), default=None)
    return {
        "agents": [a.to_dict(now, b.sched.agent_score(a.name)) for a in b.fleet],
        "queue": {"pending": b.sched.pending_count(), "by_priority": by_priority,
                  "oldest_wait": round(time.time() - oldest, 3) if oldest else 0.0},
        "jobs": b.store.counts(),
        "bad_frames": dict(b.bad_frames),
        **b.counters,
        "uptime": round(b.uptime(), 3),
    }


def op_jobs_list(b: "Broker", args: _Args, **_: Any) -> list[dict[str, Any]]:
    """jobs.list {limit=50, state=[..], project, user, since} → [job] newest first."""
    limit = args.get("limit", int, 50)
    if not 0 < limit <= LIST_MAX:
        raise BadRequest(f"limit must be between 1 and {LIST_MAX}")
    states = args.strings("state")
    for s in states:
        if s not in {st.value for st in JobState}:
            raise BadRequest(f"unknown state {s!r}")
    jobs = b.store.list(limit=limit, states=states, project=args.get("project", str),
                        user=args.get("user", str), since=args.get("since", (int, float)))
    return [job_dict(b, b.jobs.get(j.id, j)) for j in jobs]


def op_jobs_get(b: "Broker", args: _Args, **_: Any) -> dict[str, Any]:
    """jobs.get {id} → job with tail and attempts; id may be a unique prefix."""
    job = resolve(b, args.get("id", str))
    out = job_dict(b, job, with_tail=True)
    out["attempts"] = b.store.attempts(job.id)
    return out


def op_jobs_cancel(b: "Broker", args: _Args, **_: Any) -> list[dict[str, Any]]:
    """jobs.cancel {ids} → [{id, state, result}]: pending → killed at once; running → the
    agent stops it (result "cancelling"); finished → result "already <state>"."""
    ids = args.strings("ids")
    if not ids:
        raise BadRequest("no job ids given")
    jobs = [resolve(b, i) for i in ids]  # all or nothing: an unknown id fails the request
    out = []
    for job in jobs:
        live = b.jobs.get(job.id)
        if live is None:
            out.append({"id": job.id, "state": job.state.value, "result": f"already {job.state.value}"})
        else:
            result = b.cancel(live)
            out.append({"id": job.id, "state": live.state.value, "result": result})
    return out


_log_reqs = itertools.count(1)


def op_logs_read(b: "Broker", args: _Args, identity: bytes, req: int, **_: Any) -> Any:
    """logs.read {id, offset=0, limit=65536} → {data, offset, size, state, source}: bytes of
    the job's output.log, fetched from its agent; "broker" source = the tail kept here."""
    job = resolve(b, args.get("id", str))
    offset = args.get("offset", int, 0)
    limit = args.get("limit", int, 65536)
    if offset < 0 or not 0 < limit <= protocol.MAX_MESSAGE // 2:
        raise BadRequest("offset must be >= 0 and limit between 1 and 524288")
    agent = b.fleet.get(job.host) if job.host else None
    if agent is None or not agent.live or agent.identity not in b.fleet.by_identity:
        return tail_result(job)
    token = next(_log_reqs)
    b.log_waits[token] = LogWait(identity, req, job.id, time.monotonic() + LOG_WAIT)
    b.send_agent(agent.identity, protocol.LogRequest(req=token, job_id=job.id, offset=offset,
                                                     limit=limit))
    return DEFERRED


def on_log_chunk(b: "Broker", msg: protocol.LogChunk) -> None:
    wait = b.log_waits.pop(msg.req, None)
    if wait is None:
        return
    job = b.jobs.get(wait.job_id) or b.store.get(wait.job_id)
    if msg.error:
        if job is not None:
            b.reply(wait.identity, protocol.Reply(req=wait.req, ok=True, result=tail_result(job)))
        else:
            b.reply(wait.identity, rpc.failure(wait.req, Unavailable(msg.error)))
        return
    state = job.state.value if job is not None else "unknown"
    b.reply(wait.identity, protocol.Reply(req=wait.req, ok=True, result={
        "data": msg.data, "offset": msg.offset, "size": msg.size, "state": state,
        "source": "agent"}))


def expire_log_waits(b: "Broker", now: float) -> None:
    for token, wait in list(b.log_waits.items()):
        if wait.deadline <= now:
            del b.log_waits[token]
            job = b.jobs.get(wait.job_id) or b.store.get(wait.job_id)
            if job is not None:
                b.reply(wait.identity, protocol.Reply(req=wait.req, ok=True, result=tail_result(job)))


OPS: dict[str, Callable[..., Any]] = {
    name[3:].replace("_", "."): fn for name, fn in list(globals().items())
    if name.startswith("op_") and callable(fn)
}


# ---------------------------------------------------------------------------
# helpers


def resolve(b: "Broker", ident: str | None) -> "Job":
    """The job named by a full id or a unique prefix of at least 6 characters."""
    if not ident:
        raise BadRequest("no job id given")
    ident = ident.strip()
    if not JOB_PREFIX_RE.match(ident):
        raise NotFound(f"no job {ident!r} (ids look like 113754-a2f5c10e9b3d)")
    job = b.jobs.get(ident)
    if job is not None:
        return job
    found = b.store.find(ident, limit=2)
    if not found:
        raise NotFound(f"no job {ident!r}")
    if len(found) > 1:
        raise Ambiguous(f"{ident!r} names more than one job; give more of the id")
    job = b.jobs.get(found[0]) or b.store.get(found[0])
    assert job is not None
    return job


def job_dict(b: "Broker", job: "Job", with_tail: bool = False) -> dict[str, Any]:
    out = job.to_dict(with_tail=with_tail)
    if job.state is JobState.PENDING and job.id in b.jobs:
        out["why"] = b.sched.why(job.id)
    return out


def tail_result(job: "Job") -> dict[str, Any]:
    data = ("\n".join(job.tail) + ("\n" if job.tail else "")).encode()
    return {"data": data, "offset": 0, "size": len(data), "state": job.state.value,
            "source": "broker"}


# ops in their own modules use the helpers above, so they join last
from luzia.broker import control_events, control_jobs, control_ops  # noqa: E402
OPS.update(control_ops.OPS)
OPS.update(control_jobs.OPS)
OPS.update(control_events.OPS)
