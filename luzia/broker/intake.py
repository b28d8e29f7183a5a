"""Submissions into the broker (lifecycle's `accept` edge): each becomes a pending job, or a
rejected one that stays visible (its user not the submitter's to name, the queue full, an
unknown dependency); a job whose dependency failed fails at once. A loop turn's submissions
are taken together (`accept_all`: one query, one statement), as if one by one.
"""

from __future__ import annotations

import logging
import time

from luzia import protocol
from luzia.broker.job import Job
from luzia.broker.lifecycle import enqueue, finish
from luzia.broker.model import Model
from luzia.broker.routing import detect_type
from luzia.identity import Submitter, refusal as refusal_for_user
from luzia.states import JobState

log = logging.getLogger(__name__)

LOG_EACH = 8            # a turn that takes more submissions logs them in one line


def accept(m: Model, spec: protocol.JobSpec, by: Submitter | None = None) -> Job | None:
    """A submission from `by` becomes a pending job, or a rejected one (its user is not
    `by`'s to name, queue full, unknown dependency) that stays visible; None for an id the
    broker has (idempotent). `by` None: a submission from inside (not judged, no submitter)."""
    return accept_all(m, [spec], [by])[0]


def accept_all(m: Model, specs: list[protocol.JobSpec],
               by: list[Submitter | None] | None = None) -> list[Job | None]:
    """`accept` for the submissions of one turn, in order, each from its `by` (None: all
    from inside): one query finds the ids the store has, one statement writes the new jobs
    and their event rows."""
    stored = m.store.existing([s.id for s in specs if s.id not in m.jobs])
    new: dict[str, Job] = {}
    ends: set[str] = set()              # this turn's jobs that end at once: rejected, or failed
    pending = m.sched.pending_count()   # once this turn's jobs before a job are in
    taken: list[Job | None] = []
    for spec, sender in zip(specs, by or [None] * len(specs), strict=True):
        if spec.id in m.jobs or spec.id in stored or spec.id in new:
            m.counters["duplicates"] += 1
            taken.append(None)
            continue
        job = new[spec.id] = _new_job(m, spec, m.store.next_seq + len(new))
        refusal = _user_refusal(m, job, sender) or _refusal(m, job, pending, new)
        if refusal:
            job.move(JobState.REJECTED, refusal)
            job.finished_at = job.updated_at
            ends.add(job.id)
        elif _fails_at_once(m, job, new, ends):
            ends.add(job.id)
        else:
            pending += 1
        taken.append(job)
    m.store.insert_all(list(new.values()), fresh=True)     # each made by _new_job
    m.counters["submissions"] += len(new)
    each = len(new) <= LOG_EACH
    # a line per job: at info for a few, at debug (asked once a turn, not per job) for many
    level = logging.INFO if each else logging.DEBUG if log.isEnabledFor(logging.DEBUG) else 0
    _queue_new(m, list(new.values()), level)
    if not each:
        _log_many(list(new.values()))
    return taken


def _queue_new(m: Model, jobs: list[Job], level: int) -> None:
    """A turn's new jobs are stored: each published, then queued (or failed: a dependency
    failed; a rejected one only counted), its log line at `level` (0: none). One loop, no
    call per job but what it needs: in a flood each call is a share of the broker's time."""
    now = time.monotonic()      # when this turn's jobs became pending (the scheduler's age)
    for job in jobs:
        m.out.publish(job)
        if job.state is JobState.REJECTED:
            _rejected(m, job, level)
            continue
        m.jobs[job.id] = job
        if level:
            log.log(level, "job %s pending: project=%s user=%s priority=%d type=%s", job.id,
                    job.project, job.user, job.priority, job.type)
        if job.after:
            _after_dependencies(m, job)
        else:               # most jobs: nothing to wait for, nothing that failed
            enqueue(m, job, pending_deps=[], now=now)


def _user_refusal(m: Model, job: Job, by: Submitter | None) -> str:
    """Records who submitted `job`; why its user is not theirs to name ("" if it is)."""
    if by is None:
        return ""
    job.submitter = by.name
    project = m.cfg.projects.get(job.project)
    return refusal_for_user(by.name, job.user, project.user if project else None, by.admin)


def _rejected(m: Model, job: Job, level: int) -> None:
    """A rejected job is stored: counted, and logged a step above `level` (0: not)."""
    m.counters["rejections"] += 1
    if level:
        log.log(logging.WARNING if level == logging.INFO else level,
                "job %s rejected: %s", job.id, job.reason)


def _after_dependencies(m: Model, job: Job) -> None:
    """A new pending job with dependencies: queued to wait for them, or failed (one did)."""
    deps = _dependency_states(m, job)
    failed = [(d, s) for d, s in deps.items()
              if s is not None and s.terminal and s is not JobState.COMPLETED]
    if failed:
        finish(m, job, JobState.FAILED, f"dependency {failed[0][0]} {failed[0][1].value}")
    else:
        enqueue(m, job, pending_deps=[d for d, s in deps.items() if s is not JobState.COMPLETED])


def _log_many(jobs: list[Job]) -> None:
    """One line for a turn's many submissions (a line per job would cost a quarter of the
    broker's time in a flood, and say less): the first and last ids, the rejections."""
    rejected = [j for j in jobs if j.state is JobState.REJECTED]
    log.info("%d jobs submitted (%s ... %s): %d pending, %d rejected%s", len(jobs), jobs[0].id,
             jobs[-1].id, len(jobs) - len(rejected), len(rejected),
             f" ({rejected[0].reason}, ...)" if rejected else "")


def _new_job(m: Model, spec: protocol.JobSpec, seq: int) -> Job:
    now = time.time()
    sched = m.cfg.scheduler
    kind = spec.type or detect_type(spec.task, sched.type_rules, sched.default_type)
    return Job(id=spec.id, seq=seq, project=spec.project, user=spec.user,
               task=spec.task, priority=spec.priority, type=kind,
               # no --timeout and none from the project: the task type's default, else the global
               timeout=spec.timeout or sched.timeouts.get(kind) or m.cfg.timeout,
               max_retries=spec.max_retries, workdir=spec.workdir,
               submitted_at=spec.submitted_at or now, after=list(spec.after),
               metadata=dict(spec.metadata), updated_at=now, repo=spec.repo, base=spec.base,
               base_commit=spec.base_commit)


def queue_full(m: Model, pending: int | None = None) -> bool:
    """The queue holds broker.max_pending jobs (or would, with `pending` jobs in it): a
    submission now is rejected."""
    limit = m.cfg.broker.max_pending
    return bool(limit) and (m.sched.pending_count() if pending is None else pending) >= limit


def _refusal(m: Model, job: Job, pending: int, new: dict[str, Job]) -> str:
    """Why `job` is rejected ("" if it is not), with `pending` jobs queued before it and
    `new` the jobs of its turn (a dependency may be among them)."""
    if queue_full(m, pending):
        return f"queue full ({pending} pending, max_pending={m.cfg.broker.max_pending})"
    if job.after:
        unknown = [d for d in job.after
                   if d not in m.jobs and (d not in new or d == job.id) and m.store.get(d) is None]
        if unknown:
            return f"unknown dependency {unknown[0]}"
    return ""


def _fails_at_once(m: Model, job: Job, new: dict[str, Job], ends: set[str]) -> bool:
    """Has a dependency of `job` failed, or will it fail in this turn (`ends`)?"""
    if not job.after:
        return False
    if any(d in ends for d in job.after):
        return True
    states = m.store.states_of(d for d in job.after if d not in m.jobs and d not in new)
    return any(s.terminal and s is not JobState.COMPLETED for s in states.values())


def _dependency_states(m: Model, job: Job) -> dict[str, JobState | None]:
    """Each dependency's state; None for one still unfinished."""
    if not job.after:
        return {}
    states: dict[str, JobState | None] = {d: None for d in job.after if d in m.jobs}
    states.update(m.store.states_of(d for d in job.after if d not in m.jobs))
    return states
