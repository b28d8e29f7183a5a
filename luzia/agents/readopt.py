"""After an agent restart: the job directories not yet acknowledged are ours again.

A job whose wrapper still runs is re-adopted RUNNING (by its session, or by its wrapper's
pid when another runner started it); one that ended while no agent watched is re-adopted
ENDED with its exit code, which goes to the broker in the Hello; one whose command never
started is left to the broker, which requeues it (failing it would fail a job that never
ran). A wrapper that vanished without an exit code ends its job with -1, never success.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from luzia.agents import attention, processes, stall, worktrees
from luzia.agents.held import ADOPT_GRACE, Run
from luzia.agents.jobdir import JobDir
from luzia.agents.runners import Runner
from luzia.agents.runstate import RunState
from luzia.config import Config
from luzia.jobstatus import AttemptState, JobStatus

log = logging.getLogger(__name__)


def readopt(cfg: Config, runner: Runner) -> list[Run]:
    """The runs found in the job directories, in id order."""
    root = Path(cfg.jobs_dir)
    try:
        dirs = sorted(d for d in root.iterdir() if d.is_dir())
    except OSError as exc:
        log.warning("cannot scan %s for jobs to re-adopt: %s", root, exc)
        return []
    runs = []
    for d in dirs:
        jd = JobDir(root, d.name)
        status = jd.status()
        if not status.found or status.acked:
            continue
        run = _found(cfg, runner, jd, status)
        if run is None:
            continue
        if run.exit_code is not None and status.state != AttemptState.EXITED:
            _note(jd, state=AttemptState.EXITED, exit_code=run.exit_code, reason=run.reason,
                  finished_at=time.time())
        runs.append(run)
        log.info("job %s re-adopted (attempt %d, %s)", run.id, run.attempt,
                 "running" if run.exit_code is None else f"ended with {run.exit_code}")
    return runs


def _found(cfg: Config, runner: Runner, jd: JobDir, status: JobStatus) -> Run | None:
    """The run of one unacknowledged job directory, or None when it is left to the broker."""
    run = Run(dir=jd, attempt=max(1, status.attempt), grace=ADOPT_GRACE,
              workspace=worktrees.workspace_of(jd.path))    # kept as it is: the job goes on
    run.exit_code = jd.exit_code()
    if run.exit_code is None and not jd.pid() and processes.spawner_drained(jd):
        # a spawner runs it, or never got it: it has read all it was sent now
        run.exit_code = jd.exit_code()
        if run.exit_code is None and not jd.pid():
            _never_started(jd)
            return None
    if run.exit_code is not None:
        run.reason = status.reason
    elif not runner.alive(jd):
        # its session is gone; its wrapper may still run (started by the other runner)
        run.by_pid = processes.wrapper_alive(jd) or processes.rediscover_wrapper(jd)
        run.exit_code = None if run.by_pid else jd.exit_code()
        if run.exit_code is None and not run.by_pid and not jd.pid():
            _never_started(jd)
            return None
        if run.exit_code is None and not run.by_pid:
            run.exit_code, run.reason = -1, "runner: process vanished"
    if run.exit_code is not None:
        run.state = RunState.ENDED      # born ended: it ended while no agent watched
    started_at = _timing(cfg, jd, run, status)
    # the timeout counts from the job's start, not from this agent's
    run.started = time.monotonic() - max(0.0, time.time() - started_at)
    return run


def _never_started(jd: JobDir) -> None:
    """The agent died before the command started: not held, so the broker requeues it."""
    log.info("job %s never started before the last agent stopped; leaving it to the broker",
             jd.id)
    _note(jd, state=AttemptState.NEVER_STARTED, acked=True)


def _note(jd: JobDir, **fields) -> None:
    """The record when the disk lets us: a full disk must not stop the agent's start (the
    exit status, in room reserved when the job started, is what re-adoption trusts)."""
    try:
        jd.set_status(**fields)
    except OSError as exc:
        log.warning("job %s: cannot update its status.json: %s", jd.id, exc.strerror or exc)


def _timing(cfg: Config, jd: JobDir, run: Run, status: JobStatus) -> float:
    """Set the run's timeout, stall and attention watches from meta.json; the attempt's
    start time."""
    try:
        job = jd.meta()["job"]
        run.timeout = float(job.get("timeout", 0))
        run.stall = stall.watch_for(cfg, str(job.get("project", "")))
        run.attention = attention.watch_for(cfg)
        return float(status.started_at or time.time())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return time.time()
