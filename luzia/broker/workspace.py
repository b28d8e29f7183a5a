"""The broker's side of workspaces (docs/WORKSPACES.md).

What the agents say of a job's worktree goes into the job: where it is (Started), the base
commit its first attempt fixed (Progress: a retry anywhere starts from it), its end on the
branch (Done), a push that succeeded on a later try and a worktree that is gone (Heartbeat:
discarded, or kept `agent.workspace_keep` after its end). The discards an agent has not
done yet are kept here, in the store's meta table, and repeated in the broker's
heartbeats to that agent until it reports them done, so a discard outlives a restart of
either. And which jobs share a work directory: a
project without `repo` runs one job at a time in its `workdir` (unless it sets
`shared_concurrent`), a rule the scheduler applies (rules.py).
"""

from __future__ import annotations

import logging
import time

from luzia import protocol
from luzia.broker.fleet import Agent
from luzia.broker.job import Job
from luzia.broker.model import Model
from luzia.config import Config

log = logging.getLogger(__name__)

DISCARDS = "workspace_discards"      # the store's meta key: {agent: [job ids]}
PROTOCOL = 3                         # the first protocol whose agents make a job's worktree


def shared_workdir(cfg: Config, job: Job) -> str:
    """The work directory `job` shares with its project's other jobs ("" when it has its
    own: a worktree, its job directory, or a project with shared_concurrent)."""
    if job.repo or not job.workdir:
        return ""
    project = cfg.projects.get(job.project)
    return "" if project is not None and project.shared_concurrent else job.workdir


def unfit(job: Job, agent: Agent) -> str:
    """Why `agent` must not run `job` ("" if it may): an agent of an older protocol would
    ignore the job's repo and run it without its worktree, its work never coming home."""
    if not job.repo or agent.protocol >= PROTOCOL:
        return ""
    return (f"agent {agent.name} speaks protocol {agent.protocol} (Luzia "
            f"{agent.version or 'of the first release'}); a job with a workspace needs "
            f"protocol {PROTOCOL}: upgrade it")


def started(job: Job, agent: Agent, msg: protocol.Started) -> None:
    """Started: where this attempt's worktree is (before the start edge saves the job)."""
    if msg.workspace:
        job.workspace, job.workspace_host, job.branch = msg.workspace, agent.name, msg.branch


def progress(job: Job, msg: protocol.Progress) -> None:
    """Progress: the base commit, once the wrapper fixed it; kept for every retry."""
    if msg.base_commit and not job.base_commit:
        job.base_commit = msg.base_commit
        log.info("job %s: base commit %s", job.id, msg.base_commit[:10])


def done(job: Job, msg: protocol.Done) -> None:
    """Done: the attempt's end on the branch (before the end edge saves the job)."""
    if msg.files_changed < 0 and not msg.workspace_note:
        return                          # no workspace (or an agent of protocol 2)
    if msg.base_commit and not job.base_commit:
        job.base_commit = msg.base_commit
    job.head_commit = msg.head_commit
    job.files_changed = msg.files_changed if msg.files_changed >= 0 else None
    job.lines_added, job.lines_removed = msg.lines_added, msg.lines_removed
    job.push = msg.push


def heartbeat(m: Model, agent: Agent, msg: protocol.Heartbeat) -> None:
    """An agent's beat: its worktrees' disk, late pushes, discards done."""
    agent.workspace_bytes, agent.workspaces = msg.workspace_bytes, msg.workspaces
    for job_id in msg.pushed:
        job = _job(m, job_id)
        if job is not None and job.push != "pushed" and job.workspace_host == agent.name:
            job.push = "pushed"
            _save(m, job, f"branch {job.branch} pushed by {agent.name} on a later try")
    waiting = m.discards.get(agent.name, set())
    for job_id in msg.removed:
        job = _job(m, job_id)
        if job is not None and job.workspace and job.workspace_host == agent.name:
            job.workspace = ""
            _save(m, job, f"worktree removed by {agent.name}" + (
                f", and its branch {job.branch}" if job_id in waiting else ""))
    done = waiting & set(msg.removed)
    if done:
        waiting -= done
        if not waiting:
            del m.discards[agent.name]
        m.store.set_meta(DISCARDS, _plain(m.discards))


def discard(m: Model, job: Job) -> bool:
    """Record `job`'s workspace as discarded; its agent removes it (now, or once it is back).
    True when there is a worktree for the agent to remove."""
    job.outcome, job.outcome_at = "discarded", time.time()
    waits = bool(job.workspace and job.workspace_host)
    if waits:
        m.discards.setdefault(job.workspace_host, set()).add(job.id)
        m.store.set_meta(DISCARDS, _plain(m.discards))
    _save(m, job, "discarded" + (f": {job.workspace_host} removes its worktree and branch "
                                 f"{job.branch}" if waits else ""))
    return waits


def merged(m: Model, job: Job, how: str) -> None:
    """`luzia merge` merged the job's branch (how: merged | squashed) where it ran."""
    job.outcome, job.outcome_at = how, time.time()
    _save(m, job, f"branch {job.branch} {how}")


def restore(m: Model) -> None:
    """After a broker restart: the discards their agents have not done yet."""
    saved = m.store.meta(DISCARDS)
    if isinstance(saved, dict):
        m.discards.update({str(host): {i for i in ids if isinstance(i, str)}
                           for host, ids in saved.items() if isinstance(ids, list) and ids})


def beat_for(m: Model, agent: Agent) -> protocol.Heartbeat:
    """The broker's heartbeat to `agent`, with the discards it still has to do."""
    beat = agent.beat()
    waiting = m.discards.get(agent.name)
    if not waiting:
        return beat
    return protocol.Heartbeat(running=beat.running, discard=sorted(waiting)[:protocol.MAX_LIST])


def _job(m: Model, job_id: str) -> Job | None:
    return m.jobs.get(job_id) or m.store.get(job_id)


def _save(m: Model, job: Job, event: str) -> None:
    # no job event: its state did not change (a second job.completed would read as news)
    m.store.save_workspace(job, event)
    log.info("job %s: %s", job.id, event)


def _plain(discards: dict[str, set[str]]) -> dict[str, list[str]] | None:
    return {host: sorted(ids) for host, ids in discards.items() if ids} or None
