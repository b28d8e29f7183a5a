"""Control operations that change a finished job: `luzia retry`.

Kept apart from control.py (queries and cancel) and merged into control.OPS, so each
operation's docstring is still its protocol documentation (docs/PROTOCOL.md).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

from luzia.broker.control import resolve
from luzia.errors import BadRequest
from luzia.states import JobState

if TYPE_CHECKING:
    from luzia.broker.server import Broker
    from luzia.broker.store import Job

log = logging.getLogger(__name__)

RETRYABLE = (JobState.FAILED, JobState.KILLED, JobState.LOST)


def op_jobs_retry(b: "Broker", args: Any, **_: Any) -> list[dict[str, Any]]:
    """jobs.retry {ids} → [{id, state, result}]: a failed, killed or lost job goes back to
    pending as a new attempt (same id; its retry budget starts again), result "retrying";
    any other job is left alone, result "not retried: <why>". An unknown id fails the
    whole request (not_found), as for jobs.cancel."""
    ids = args.strings("ids")
    if not ids:
        raise BadRequest("no job ids given")
    jobs = [resolve(b, i) for i in ids]
    out = []
    for job in jobs:
        refusal = _refusal(b, job)
        if refusal:
            out.append({"id": job.id, "state": job.state.value, "result": f"not retried: {refusal}"})
            continue
        retry(b, b.jobs.get(job.id) or job)
        out.append({"id": job.id, "state": JobState.PENDING.value, "result": "retrying"})
    return out


def _refusal(b: "Broker", job: "Job") -> str:
    """Why this job cannot be retried now, or "" if it can."""
    if job.state is JobState.COMPLETED:
        return "it completed; submit the task again to run it anew"
    if job.state is JobState.REJECTED:
        return f"it was rejected ({job.reason}); submit it again"
    if job.state not in RETRYABLE:
        return f"it is {job.state.value}; cancel it first to run it again"
    deps = b.store.states_of(d for d in job.after if d not in b.jobs)
    failed = sorted(d for d, s in deps.items() if s is not JobState.COMPLETED)
    if failed:
        return f"its dependency {failed[0]} is {deps[failed[0]].value}; retry that first"
    return ""


def retry(b: "Broker", job: "Job") -> None:
    """Back to pending with a fresh retry budget; the next Assign makes attempt n+1."""
    reason = "retry requested"
    if job.state is JobState.LOST:          # do not wait out lost_grace: requeue it now
        b.requeue(job, f"{reason} (its agent {job.host} is lost)")
        return
    job.move(JobState.PENDING, reason)
    job.retries = 0
    job.host = ""
    job.finished_at = job.exit_code = None
    job.progress, job.message, job.stalled = -1.0, "", False
    b.jobs[job.id] = job
    b.store.save(job, reason)
    b.publish(job)
    b._enqueue(job)
    log.info("job %s pending again: %s (it had %d attempts)", job.id, reason, job.attempt)


OPS: dict[str, Callable[..., Any]] = {"jobs.retry": op_jobs_retry}
