"""Jobs: what `luzia jobs`, `luzia cancel`, `luzia retry` and the importers ask the broker."""

from __future__ import annotations

from typing import Any

from luzia.broker import lifecycle
from luzia.broker.job import Job
from luzia.broker.model import Model
from luzia.broker.ops.request import Args, job_view, resolve, resolve_all
from luzia.errors import BadRequest
from luzia.states import JOB_STATE_NAMES, RETRYABLE, JobState

LIST_MAX = 10_000
TEXT_MAX = 200              # characters of a jobs.list text search
IDS_MAX = 10_000


def list_jobs(m: Model, args: Args) -> list[dict[str, Any]]:
    """jobs.list {limit=50, offset=0, state=[..], project, user, host, text, since} → [job]
    newest first: those matching every given filter, `limit` of them from `offset` on;
    `text` matches the start of an id or any part of the task (the dashboard's search)."""
    limit = args.limit(50, LIST_MAX)
    offset = args.get("offset", int, 0)
    if offset < 0:
        raise BadRequest("offset must be 0 or more")
    jobs = m.store.recent(limit=limit, offset=offset, **_filters(args))
    return [job_view(m, m.jobs.get(j.id, j)) for j in jobs]


def count(m: Model, args: Args) -> dict[str, Any]:
    """jobs.count {state=[..], project, user, host, text, since} → {total, by_state: {state:
    n}}: how many jobs jobs.list pages through; by_state ignores the state filter (the
    counts a list's state tabs show). One GROUP BY in SQLite."""
    total, by_state = m.store.count(**_filters(args))
    return {"total": total, "by_state": by_state}


def _filters(args: Args) -> dict[str, Any]:
    """The filters jobs.list and jobs.count share, checked."""
    states = args.strings("state")
    for s in states:
        if s not in JOB_STATE_NAMES:
            raise BadRequest(f"unknown state {s!r}")
    text = args.get("text", str)
    if text is not None and len(text) > TEXT_MAX:
        raise BadRequest(f"text must be at most {TEXT_MAX} characters")
    return {"states": states, "project": args.get("project", str), "user": args.get("user", str),
            "host": args.get("host", str), "text": text,
            "since": args.get("since", (int, float))}


def get(m: Model, args: Args) -> dict[str, Any]:
    """jobs.get {id} → job with tail, attempts and causes; id may be a unique prefix.
    `causes` says where its attempts came from: {automatic, manual, requeued} counts of
    the attempts after the first that an automatic retry, an operator's `luzia retry` or
    a requeue (agent lost, preempted) began, `requeued_why` the last requeue's reason, and
    `next` the cause of the attempt a pending job waits for (null otherwise)."""
    job = resolve(m, args.get("id", str))
    out = job_view(m, job, with_tail=True)
    out["attempts"] = m.store.attempts(job.id)
    out["causes"] = causes(m, job)
    out["session"] = job.session or lifecycle.started_session(m, job)   # a finished job's too
    return out


def causes(m: Model, job: Job) -> dict[str, Any]:
    """The causes of a job's attempts, read from its event rows (lifecycle.cause)."""
    counts = {"automatic": 0, "manual": 0, "requeued": 0}
    why, began, cause = "", 0, None
    rows = m.store.db.execute("SELECT state, detail FROM events WHERE job_id=? ORDER BY seq",
                              (job.id,))
    for state, detail in rows:
        if state == JobState.ASSIGNED.value:
            if began and cause:
                counts[cause] += 1
            began, cause = began + 1, None
        elif state == JobState.PENDING.value and began:
            cause = lifecycle.cause(detail)
            why = detail if cause == "requeued" else why
    waiting = job.state is JobState.PENDING and began > 0
    return {**counts, "requeued_why": why, "next": cause if waiting else None}


def cancel(m: Model, args: Args) -> list[dict[str, Any]]:
    """jobs.cancel {ids, dry_run=false} → [{id, state, result}]: pending or paused → killed
    at once; running → the agent stops it (result "cancelling"); finished → result "already
    <state>". An unknown id fails the whole request (not_found). With dry_run nothing
    changes and the results say what would happen ("would kill", "would cancel: ...")."""
    dry_run = args.get("dry_run", bool, False)
    out = []
    for job in resolve_all(m, args):
        live = m.jobs.get(job.id)
        if live is None:
            result = f"already {job.state.value}"
        elif dry_run:
            result = ("would kill" if live.state in lifecycle.KILLED_AT_ONCE
                      else f"would cancel: its agent {live.host} stops it")
        else:
            result = lifecycle.cancel(m, live)
            job = live
        out.append({"id": job.id, "state": job.state.value, "result": result})
    return out


def retry(m: Model, args: Args) -> list[dict[str, Any]]:
    """jobs.retry {ids, fresh=false, dry_run=false} → [{id, state, result}]: a failed,
    killed, lost or paused job goes back to pending as a new attempt (same id; its retry
    budget starts again; a paused one does not wait for its reset), result "retrying"; it
    resumes its agent's conversation (docs/AGENTS.md) unless `fresh`. Any other job is left
    alone, result "not retried: <why>". An unknown id fails the whole request (not_found),
    as for jobs.cancel. With dry_run nothing changes: "would retry as attempt N"."""
    fresh = bool(args.get("fresh", bool, False))
    dry_run = args.get("dry_run", bool, False)
    out = []
    for job in resolve_all(m, args):
        refusal = _no_retry(m, job)
        if refusal:
            result = f"not retried: {refusal}"
        elif dry_run:
            result = f"would retry as attempt {job.attempt + 1}"
        else:
            job = m.jobs.get(job.id) or job
            lifecycle.retry(m, job, fresh)
            result = "retrying"
        out.append({"id": job.id, "state": job.state.value, "result": result})
    return out


def _no_retry(m: Model, job: Job) -> str:
    """Why this job cannot be retried now, or "" if it can."""
    if job.state is JobState.COMPLETED:
        return "it completed; submit the task again to run it anew"
    if job.state is JobState.REJECTED:
        return f"it was rejected ({job.reason}); submit it again"
    if job.state not in RETRYABLE:
        return f"it is {job.state.value}; cancel it first to run it again"
    deps = m.store.states_of(d for d in job.after if d not in m.jobs)
    failed = sorted(d for d, s in deps.items() if s is not JobState.COMPLETED)
    if failed:
        return f"its dependency {failed[0]} is {deps[failed[0]].value}; retry that first"
    return ""


def exist(m: Model, args: Args) -> dict[str, str]:
    """jobs.exist {ids} → {id: state}: those of `ids` the broker has, with their state;
    importers use it to report what an earlier run took (and what became of it)."""
    ids = args.strings("ids")
    if len(ids) > IDS_MAX:
        raise BadRequest(f"at most {IDS_MAX} ids per request")
    live = {i: m.jobs[i].state.value for i in ids if i in m.jobs}
    stored = m.store.states_of([i for i in ids if i not in live])
    return {**live, **{i: state.value for i, state in stored.items()}}


OPS = {"jobs.list": list_jobs, "jobs.count": count, "jobs.get": get, "jobs.cancel": cancel,
       "jobs.retry": retry, "jobs.exist": exist}
