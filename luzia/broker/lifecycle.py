"""Every change of a job's state, one function per edge (supervisord's `change_state()`).

An edge moves the job through the state machine (`JobState.check` raises on a bug), saves
it with an event row, writes the attempt that begins or ends, publishes the job's event,
and tells the scheduler: a credit freed (`Fleet.release`), a job pending again
(`enqueue`), `dirty` for a new decision. The handlers (agents.py for the agents'
messages, ops/ for the operators' requests, server.py for submissions and the clock)
decide *which* edge; only this module says what an edge does.

    accept       a submission → pending, or rejected (intake.py: its user not the
                 submitter's to name, queue full, unknown dependency)
    assign       pending → assigned (attempt n+1, on the agent the scheduler picked)
    start        assigned | lost → running          (Started)
    lose         assigned | running → lost          (its agent stopped beating)
    resume       lost → running                     (its agent is back with it)
    end          an agent's Done → finish, requeue (preempted), pause or retry_later
    unstarted    an agent's Done for a command that never started → pending after a backoff
    finish       → completed | failed | killed      (also a pending or paused job: cancel,
                                                     flush)
    retry_later  → pending after a backoff          (a failure with retries left)
    requeue      assigned | running | lost → pending now (agent gone, preempted)
    pause        assigned | running | lost → paused (a usage limit: until its reset)
    unpause      paused → pending                   (the reset came: ahead of its peers)
    retry        failed | killed | lost | paused → pending   (an operator's `luzia retry`)
    cancel, preempt: ask the job's agent to stop it; its Done ends it (`end`)
    needs_input  a running job's pane waits for a person, or no longer (a flag, no edge)

A job with an agent's session id resumes that conversation on its next attempt (`resume`,
docs/AGENTS.md) after a pause, a lost agent, a preemption or an operator's retry (unless
--fresh); a retry after a failure starts afresh.
"""

from __future__ import annotations

import heapq
import logging
import re
import time

from luzia import protocol
from luzia.broker import gpu, workspace
from luzia.broker.fleet import Agent
from luzia.broker.job import Job
from luzia.broker.model import Model
from luzia.broker.rules import SchedJob, over_ceiling
from luzia.states import NEEDS_INPUT, JobState, exit_text

log = logging.getLogger(__name__)

PREEMPTED_BY = "preempted by "   # a held job's reason while it is stopped for a critical job
NEVER_STARTED = "never started"  # an attempt whose command never ran (a runner or disk error)
NEVER_STARTED_MAX = 5            # such attempts of one job before it fails: a host that can start nothing
AUTOMATIC = "retry"              # "retry 1/2 after exit 1": pending for an automatic retry
RETRY_REQUESTED = "retry requested"   # pending again by an operator's `luzia retry`
HOLDING = (JobState.ASSIGNED, JobState.RUNNING, JobState.LOST)   # the job holds a credit
KILLED_AT_ONCE = (JobState.PENDING, JobState.PAUSED)   # a cancel needs no agent for these
LIMIT_REASON = "usage limit: "   # an attempt that ended on a provider's usage limit
_NONE: frozenset[str] = frozenset()
AHEAD = 1 << 40           # a job back from a pause goes before its priority peers (their seq)


# the queue ---------------------------------------------------------------------------------
def enqueue(m: Model, job: Job, pending_deps: list[str] | None = None,
            now: float | None = None) -> None:
    """Hand a pending job to the scheduler (new, requeued, retried, restored); `now`, the
    monotonic time it became pending, is given by a caller that enqueues many at once."""
    after = job.after if pending_deps is None else pending_deps
    waits_for = frozenset(d for d in after if d in m.jobs) if after else _NONE
    m.sched.add(_sched_job(m, job, after=waits_for,
                           avoid=_failed_on(m, job) if job.attempt else _NONE, now=now))
    m.dirty = True


def _sched_job(m: Model, job: Job, after: frozenset[str] = frozenset(),
               avoid: frozenset[str] = frozenset(), now: float | None = None) -> SchedJob:
    seq = job.seq - AHEAD if job.pauses else job.seq
    sched = m.cfg.scheduler
    # a flood's jobs have no metadata, no GPU types, no workdir: neither call (each a
    # Python call per submission) can say anything but 0 / ""
    return SchedJob(id=job.id, seq=seq, priority=job.priority, user=job.user,
                    project=job.project, type=job.type, after=after,
                    submitted=time.monotonic() if now is None else now,
                    gpu_mem_gb=gpu.need(sched, job.type, job.metadata)
                    if job.metadata or sched.gpu_mem_gb else 0.0, avoid=avoid,
                    shared=workspace.shared_workdir(m.cfg, job) if job.workdir else "")


def _failed_on(m: Model, job: Job) -> frozenset[str]:
    """The agents an earlier attempt of `job` failed on: its retry prefers the others."""
    if not job.attempt:
        return frozenset()
    return frozenset(a["host"] for a in m.store.attempts(job.id)
                     if a["host"] and a["exit_code"] not in (None, 0)
                     and not (a["reason"] or "").startswith(LIMIT_REASON))   # not the host's fault


def restore(m: Model, job: Job) -> None:
    """After a broker restart: an unfinished job from the store takes its place again."""
    if job.state is JobState.PENDING:
        enqueue(m, job)
        return
    if job.state is JobState.PAUSED:
        heapq.heappush(m.resume_at, (job.paused_until or 0.0, job.id))
        return
    job.attempt_usage = m.store.attempt_usage(job.id, job.attempt)
    # assigned / running / lost: the credit stays taken until its agent says otherwise
    job.session = started_session(m, job)
    held_for = max(0.0, time.time() - (job.assigned_at or time.time()))
    m.fleet.restore(_sched_job(m, job), job.host, since=time.monotonic() - held_for)
    if job.reason.startswith(PREEMPTED_BY):     # it was being stopped: still is
        m.stopping[job.id] = job.reason[len(PREEMPTED_BY):]


# an attempt on an agent -------------------------------------------------------------------
def assign(m: Model, job: Job, agent: Agent) -> None:
    """pending → assigned: attempt n+1 goes to `agent`, which the scheduler picked."""
    if job.id in agent.ended:
        # its last attempt ended there and the agent still waits for our ack: ack first, or
        # it would take this Assign for a repeat and report the old end (DECISIONS 14)
        m.out.send(agent.identity, agent.beat())
    job.move(JobState.ASSIGNED, "")
    job.reset_attempt()
    job.host = agent.name
    job.attempt += 1
    job.assigned_at = time.time()
    job.account = m.accounts.pick(agent, job.account)
    resume = job.resume if m.cfg.limits.resume else ""
    busy = over_ceiling(m.cfg.scheduler, agent.cpu, agent.memory)
    busy = f"; its host is over its {busy}, it runs this one job only" if busy else ""
    m.fleet.hold(agent, job.id)
    _saved(m, job, f"assigned to {agent.name} (attempt {job.attempt})"
                   + (f" account {job.account}" if job.account else "")
                   + (f" resuming session {resume}" if resume else "") + busy)
    m.store.save_attempt(job)
    if workspace.unfit(job, agent):         # tried elsewhere, as a job that never started
        unstarted(m, job, workspace.unfit(job, agent))
        return
    m.out.send(agent.identity, protocol.Assign(job=_spec(job), attempt=job.attempt,
                                               account=job.account, resume=resume))
    log.info("job %s assigned to %s (attempt %d)%s", job.id, agent.name, job.attempt, busy)


def start(m: Model, job: Job, detail: str) -> None:
    """assigned | lost → running: its agent says it started (`detail`: where and how)."""
    job.move(JobState.RUNNING, "")
    job.started_at = time.time()
    _saved(m, job, detail)
    m.store.save_attempt(job)
    log.info("job %s running on %s (attempt %d)", job.id, job.host, job.attempt)


def lose(m: Model, job: Job, reason: str) -> None:
    """assigned | running → lost: its agent stopped beating; it keeps its credit until the
    agent comes back (`resume`) or `lost_grace` passes (`requeue`)."""
    job.move(JobState.LOST, reason)
    _saved(m, job, reason)


def resume(m: Model, job: Job, detail: str) -> None:
    """lost → running: its agent is back and still holds it."""
    job.move(JobState.RUNNING, "")
    _saved(m, job, detail)


def note(m: Model, job: Job, event: str | None = None) -> None:
    """Save and publish a change that is no edge (progress, a reason); `event` logs it."""
    _saved(m, job, event)


def needs_input(m: Model, job: Job, waiting: bool, lines: list[str]) -> None:
    """Its agent says the job's pane waits for a person (`waiting`), or no longer does.
    Raised: an events row `needs-input` (detail: the pane's last line) and the PUB event
    `job.needs-input`, what luzia-notify routes. A job restored after our restart that
    was already waiting (its newest row is that one) goes on waiting: no second row, so no
    second notification. Dropped: a `running` row, so the log shows how long it waited."""
    if waiting:
        last, at = m.store.last_event(job.id)
        again = last == NEEDS_INPUT
        job.needs_input, job.needs_input_since = True, at if again else time.time()
        job.needs_input_lines = lines
        if again:
            log.info("job %s still needs input", job.id)
            _saved(m, job, None)
            return
        log.info("job %s needs input: %s", job.id, (lines or ["?"])[-1][:200])
        m.store.save(job, (lines or [""])[-1][:protocol.MAX_LINE], NEEDS_INPUT)
        m.out.publish(job, NEEDS_INPUT)
        return
    waited = time.time() - (job.needs_input_since or time.time())
    job.clear_needs_input()
    log.info("job %s no longer waits for input (waited %.0fs)", job.id, waited)
    _saved(m, job, f"no longer waiting for input (waited {waited:.0f}s)")


def end(m: Model, job: Job, exit_code: int, reason: str, limited_until: float = 0.0,
        limit: str = "") -> None:
    """An attempt ended on its agent (Done): completed, preempted, killed, paused (a usage
    limit until `limited_until`, shown by the line `limit`), retried or failed."""
    preempted_by = m.stopping.pop(job.id, "")
    limits = m.cfg.limits
    if preempted_by:                      # stopped for a critical job, whatever it says
        requeue(m, job, PREEMPTED_BY + preempted_by, exit_code)
    elif reason == "cancelled":
        finish(m, job, JobState.KILLED, "cancelled", exit_code)
    elif limited_until and limits.enabled and job.pauses < limits.max_pauses:
        pause(m, job, limited_until, limit, exit_code)
    elif exit_code == 0 and not reason and not limited_until:
        finish(m, job, JobState.COMPLETED, "", exit_code)
    elif limited_until and limits.enabled:
        finish(m, job, JobState.FAILED, f"usage limit, paused {job.pauses} times already: "
                                        f"{limit}", exit_code)
    elif job.retries < job.max_retries:
        retry_later(m, job, exit_code, reason or exit_text(exit_code))
    else:
        finish(m, job, JobState.FAILED, reason or exit_text(exit_code), exit_code)


def unstarted(m: Model, job: Job, reason: str) -> None:
    """An attempt whose command never started (Done `started` false: the runner failed, the
    disk was full): not the job's failure, so pending again after a backoff (as a retry's)
    with its retries unused; its host is avoided as after a failure (exit -1 in the attempt).
    The NEVER_STARTED_MAX-th such attempt fails the job, so a host that can start nothing
    does not bounce it for ever. A cancel or preemption sent meanwhile wins."""
    if job.id in m.stopping:
        end(m, job, -1, reason if m.stopping[job.id] else "cancelled")
        return
    why = f"{NEVER_STARTED} on {job.host}: {reason}"
    before = sum(1 for a in m.store.attempts(job.id)
                 if a["attempt"] != job.attempt and (a["reason"] or "").startswith(NEVER_STARTED))
    if before + 1 >= NEVER_STARTED_MAX:
        finish(m, job, JobState.FAILED, f"{why} ({before + 1} attempts never started)", -1)
        return
    _close_attempt(m, job, why, -1)
    job.move(JobState.PENDING, why)
    job.reset_attempt()
    delay = backoff(m, before)
    heapq.heappush(m.retry_at, (time.monotonic() + delay, job.id))
    _saved(m, job, job.reason)
    log.info("job %s will be tried again in %.1fs: %s", job.id, delay, why)


def backoff(m: Model, before: int) -> float:
    """Seconds before the next attempt of a job that has had `before` such retries."""
    return min(m.cfg.broker.retry_max, m.cfg.broker.retry_initial * 2.0 ** before)


def finish(m: Model, job: Job, state: JobState, reason: str = "",
           exit_code: int | None = None) -> None:
    """→ completed | failed | killed: persist, free its credit, settle its dependents."""
    was_pending = job.state in (JobState.PENDING, JobState.PAUSED)    # no attempt is open
    job.move(state, reason)
    if was_pending:
        m.sched.remove(job.id)
        job.finished_at = time.time()
    else:
        _close_attempt(m, job, reason, exit_code)
    del m.jobs[job.id]
    _saved(m, job, reason)
    log.info("job %s %s%s", job.id, state.value, f": {reason}" if reason else "")
    m.dirty = True
    for dependent in m.sched.resolve(job.id, state is JobState.COMPLETED):
        dep_job = m.jobs.get(dependent)
        if dep_job is not None:
            finish(m, dep_job, JobState.FAILED, f"dependency {job.id} {state.value}")


def retry_later(m: Model, job: Job, exit_code: int, why: str) -> None:
    """running → pending after a backoff (`broker.retry_initial` doubling to `retry_max`,
    1 s to 5 min): a failure with retries left. The scheduler gets it when the backoff is
    over (`Broker.tick`)."""
    _close_attempt(m, job, why, exit_code)
    job.retries += 1
    job.move(JobState.PENDING, f"{AUTOMATIC} {job.retries}/{job.max_retries} after {why}")
    job.reset_attempt()
    job.resume = ""          # a conversation that failed is not one to go on with
    delay = backoff(m, job.retries - 1)
    heapq.heappush(m.retry_at, (time.monotonic() + delay, job.id))
    _saved(m, job, job.reason)
    log.info("job %s will retry in %.1fs (%s)", job.id, delay, job.reason)


def requeue(m: Model, job: Job, reason: str, exit_code: int | None = None) -> None:
    """assigned | running | lost → pending at once, as a new attempt: its agent is gone or
    came back without it, or it was preempted (not a failure: no retry is used)."""
    _close_attempt(m, job, reason, exit_code)
    job.move(JobState.PENDING, reason)
    job.reset_attempt()
    job.resume = job.session_id      # the same conversation goes on (docs/AGENTS.md)
    _saved(m, job, reason)
    enqueue(m, job)
    log.info("job %s requeued: %s", job.id, reason)


def pause(m: Model, job: Job, until: float, line: str, exit_code: int | None = None) -> None:
    """assigned | running | lost → paused: its attempt ended on a provider's usage limit;
    it waits, holding no credit, until the reset (`unpause`). Its event is job.paused."""
    _close_attempt(m, job, f"{LIMIT_REASON}{line}", exit_code)
    job.pauses += 1
    job.paused_until = until
    clock = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(until))
    job.move(JobState.PAUSED, f"usage limit until {clock}: {line}")
    job.reset_attempt()
    job.resume = job.session_id
    heapq.heappush(m.resume_at, (until, job.id))
    m.budgets.totals.pauses += 1
    _saved(m, job, job.reason)
    log.info("job %s paused until %s (pause %d/%d): %s", job.id, clock, job.pauses,
             m.cfg.limits.max_pauses, line)


def unpause(m: Model, job: Job, why: str = "usage limit reset") -> None:
    """paused → pending: the reset came (or an operator's retry); it goes before its
    priority peers, resuming its conversation."""
    job.move(JobState.PENDING, why)
    job.paused_until = None
    _saved(m, job, why)
    enqueue(m, job)
    log.info("job %s pending again: %s", job.id, why)


def retry(m: Model, job: Job, fresh: bool = False) -> None:
    """failed | killed | lost | paused → pending, by an operator (`luzia retry`): the next
    Assign makes attempt n+1, with a fresh retry budget; a lost job does not wait out the
    grace, a paused one its reset. It resumes its conversation unless `fresh`."""
    reason = RETRY_REQUESTED + (" (fresh)" if fresh else "")
    if job.state is JobState.LOST:
        requeue(m, job, f"{reason} (its agent {job.host} is lost)")
        if fresh:
            job.resume = ""
            m.store.save(job)
        return
    job.resume = "" if fresh else job.session_id
    if job.state is JobState.PAUSED:
        unpause(m, job, reason)
        return
    job.move(JobState.PENDING, reason)
    job.retries = 0
    job.reset_attempt()
    m.jobs[job.id] = job
    _saved(m, job, reason)
    enqueue(m, job)
    log.info("job %s pending again: %s (it had %d attempts)", job.id, reason, job.attempt)


def _close_attempt(m: Model, job: Job, reason: str, exit_code: int | None) -> None:
    """The attempt on `job.host` is over: its credit is freed and its record written."""
    m.stopping.pop(job.id, None)
    if job.host:
        m.fleet.release(job.id, job.host)
    job.clear_needs_input()           # nothing waits for a person once the attempt ended
    job.finished_at = time.time()
    if exit_code is not None:
        job.exit_code = exit_code
    m.store.save_attempt(job, reason)
    m.dirty = True


# stopping a job ------------------------------------------------------------------------
def cancel(m: Model, job: Job) -> str:
    """An operator's cancel: a pending or paused job is killed at once ("killed"); a held
    one is stopped by its agent, whose Done ends it ("cancelling")."""
    if job.state in KILLED_AT_ONCE:
        finish(m, job, JobState.KILLED, "cancelled")
        return "killed"
    m.stopping[job.id] = ""       # a user's cancel wins over a preemption
    if job.reason.startswith(PREEMPTED_BY):
        job.reason = ""
        m.store.save(job)
    _stop(m, job, "cancelled")
    return "cancelling"


def preempt(m: Model, now: float) -> None:
    """Stop the low jobs the scheduler names for critical jobs that waited too long on a
    full host (Scheduler.preemptions); each goes back to pending when its agent says it
    ended (`end`)."""
    if not m.cfg.scheduler.preempt:
        return
    making_room = set(m.stopping.values())
    for critical, victim in m.sched.preemptions(now):
        job = m.jobs.get(victim)
        if (victim in m.stopping or critical in making_room or job is None
                or job.state not in (JobState.ASSIGNED, JobState.RUNNING)):
            continue        # already being stopped, or its agent is not there to stop it
        m.stopping[victim] = critical
        making_room.add(critical)
        job.reason = PREEMPTED_BY + critical        # shown while it stops; kept over a restart
        _saved(m, job, f"preempting: {critical} (critical) waits for {job.host}")
        _stop(m, job, job.reason)
        log.info("job %s preempted by %s on %s: stopping it", victim, critical, job.host)


def _stop(m: Model, job: Job, reason: str) -> None:
    """Ask the job's agent to stop it; with its agent unreachable it is killed here."""
    agent = m.fleet.get(job.host)
    if agent is None or not agent.live:
        finish(m, job, JobState.KILLED, "cancelled (agent unreachable)")
        return
    m.out.send(agent.identity, protocol.Cancel(job_id=job.id, reason=reason))
    log.info("job %s: cancel sent to %s (%s)", job.id, agent.name, reason)


def started_session(m: Model, job: Job) -> str:
    """The tmux session its agent named in the `started` event row of this attempt (the
    session is no column of its own: a schema change waits for the migrations, issue 19)."""
    row = m.store.db.execute("SELECT detail FROM events WHERE job_id=? AND detail LIKE "
                             "'started on %' ORDER BY seq DESC LIMIT 1", (job.id,)).fetchone()
    found = re.search(r" session=(\S+) pid=", row[0]) if row and job.started_at else None
    return found[1] if found else ""


def cause(detail: str) -> str:
    """Why a job that had run went back to pending, from the detail of that event row:
    "automatic" (a retry after a failure), "manual" (`luzia retry`) or "requeued" (its agent
    was lost or came back without it, it never started, or it was preempted)."""
    if detail.startswith(RETRY_REQUESTED):
        return "manual"
    if re.match(rf"{AUTOMATIC} \d+/\d+ after ", detail):
        return "automatic"
    return "requeued"


# helpers ---------------------------------------------------------------------------------
def _saved(m: Model, job: Job, event: str | None) -> None:
    """Write the job (with an event row unless `event` is None) and publish its event."""
    m.store.save(job, event)
    m.out.publish(job)


def _spec(job: Job) -> protocol.JobSpec:
    return protocol.JobSpec(id=job.id, project=job.project, task=job.task, user=job.user,
                            priority=job.priority, type=job.type, timeout=job.timeout,
                            max_retries=job.max_retries, after=list(job.after),
                            metadata=dict(job.metadata), workdir=job.workdir,
                            submitted_at=job.submitted_at, repo=job.repo, base=job.base,
                            base_commit=job.base_commit)
