"""What every control op reads: its request's arguments (typed), the job a request names,
and the job object of the protocol."""

from __future__ import annotations

from typing import Any

from luzia.broker.job import Job
from luzia.broker.model import Model
from luzia.errors import Ambiguous, BadRequest, NotFound
from luzia.identity import Submitter
from luzia.ids import JOB_PREFIX_RE
from luzia.states import JobState
from luzia.text import clip

DEFERRED = object()          # an op's result when its reply is sent later (logs.read)


class Args:
    """A request's args with typed access (a wrong type is a bad_request, not a crash), and
    where the request came from, for an op that answers later."""

    def __init__(self, args: dict[str, Any], identity: bytes = b"", req: int = 0,
                 peer: Submitter | None = None) -> None:
        self.args = args
        self.identity = identity
        self.req = req
        self.peer = peer          # who sent it (the Unix user or CURVE key's user), if known

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

    def limit(self, default: int, most: int) -> int:
        """The `limit` argument, between 1 and `most`."""
        limit = self.get("limit", int, default)
        if not 0 < limit <= most:
            raise BadRequest(f"limit must be between 1 and {most}")
        return limit


def resolve(m: Model, ident: str | None) -> Job:
    """The job named by a full id or a unique prefix of at least 6 characters."""
    if not ident:
        raise BadRequest("no job id given")
    ident = ident.strip()
    if not JOB_PREFIX_RE.fullmatch(ident):
        raise NotFound(f"no job {clip(ident)} (ids look like 113754-a2f5c10e9b3d)")
    job = m.jobs.get(ident)
    if job is not None:
        return job
    found = m.store.find(ident, limit=2)
    if not found:
        raise NotFound(f"no job {clip(ident)}")
    if len(found) > 1:
        raise Ambiguous(f"{clip(ident)} names more than one job; give more of the id")
    job = m.jobs.get(found[0]) or m.store.get(found[0])
    if job is None:      # pruned between the two reads
        raise NotFound(f"no job {clip(ident)}")
    return job


def resolve_all(m: Model, args: Args) -> list[Job]:
    """The jobs of the `ids` argument; one unknown id fails the whole request (not_found)."""
    ids = args.strings("ids")
    if not ids:
        raise BadRequest("no job ids given")
    return [resolve(m, i) for i in ids]


def job_view(m: Model, job: Job, with_tail: bool = False) -> dict[str, Any]:
    """The job object of the protocol; a pending job says why it waits."""
    out = job.to_dict(with_tail=with_tail)
    if job.state is JobState.PENDING and job.id in m.jobs:
        out["why"] = m.sched.why(job.id)
    return out
