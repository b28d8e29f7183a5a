"""The jobs this agent holds: each run from its start to the broker's acknowledgement of its
end (the states and their transitions are in runstate.py).

Assign → job directory + runner + Started; Progress when output or progress.md change;
Done when the tracker writes the exit status; Cancel, timeouts, a stall kill and orphans stop the
command's process group (SIGTERM, then SIGKILL after kill_grace, then the runner's kill).
The broker's heartbeat lists the jobs it believes we hold: a Done no longer listed is
acknowledged, one still listed is sent again, a running job missing from it is an orphan.
Sending goes through `send` (the broker session's), so nothing here knows the socket.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from luzia import protocol
from luzia.agents import attention, outcome, processes, stall, worktrees
from luzia.agents.disk import Disk
from luzia.agents.jobdir import JobDir
from luzia.agents.runners import Runner
from luzia.agents.runstate import RunState
from luzia.config import Config
from luzia.jobstatus import AttemptState

log = logging.getLogger(__name__)

ADOPT_GRACE = 2           # broker beats that may omit a job just (re)adopted
ORPHAN_BEATS = 2          # consecutive broker beats without a job make it an orphan
LOOK_EVERY = 0.05         # seconds between looks at a run's files (output, progress, exit code)


@dataclass
class Run:
    """One run of a job this agent holds: running, stopping, or ended and not yet acknowledged."""

    dir: JobDir
    attempt: int
    state: RunState = RunState.RUNNING
    timeout: float = 0.0
    started: float = field(default_factory=time.monotonic)
    exit_code: int | None = None
    reason: str = ""              # why it is stopping or how it ended (cancelled, timeout, ...)
    never_started: bool = False   # its command never ran (runner error, disk full): Done says so
    dropped: bool = False         # the broker dropped it: stop it, report nothing
    by_pid: bool = False          # re-adopted by its wrapper's pid (started by another runner)
    stall: stall.StallWatch | None = None   # None: stall detection is off for this job
    attention: attention.Watch | None = None   # None: nobody looks for a question in its pane
    signature: tuple = ()
    progress: tuple[float, str] = (-1.0, "")
    done_sent: float = 0.0        # when its Done last went out
    missed: int = 0               # consecutive broker beats that did not list it
    grace: int = 0                # broker beats to ignore (after a Welcome adopted it)
    stop_at: float = 0.0          # when stopping began
    stop_deadline: float = 0.0    # when the stop sequence takes its next step
    next_look: float = 0.0        # when `watch` looks at its files again
    usage: protocol.Usage | None = None    # what its output adapter reported, once it ended
    limited_until: float = 0.0    # a provider's usage limit ended it: the reset (unix time)
    limit: str = ""               # ... and the line that showed it
    workspace: worktrees.JobWorkspace | worktrees.NoWorkspace = worktrees.NO_WORKSPACE

    @property
    def id(self) -> str:
        return self.dir.id

    def move(self, new: RunState) -> None:
        self.state = self.state.check(new)


class HeldJobs:
    """This agent's runs by job id, and every change of their state."""

    def __init__(self, cfg: Config, runner: Runner,
                 send: Callable[[protocol.Message], None]) -> None:
        self.cfg = cfg
        self.runner = runner
        self.send = send
        self.root = Path(cfg.jobs_dir)
        self.jobs: dict[str, Run] = {}
        self.disk = Disk(self.root)     # a full disk degrades the agent (no new work)

    # what the broker session reports ------------------------------------------------
    def for_hello(self) -> list[protocol.HeldJob]:
        """For a Hello: every run the broker may still want to hear about."""
        return [protocol.HeldJob(job_id=r.id, attempt=r.attempt, exit_code=r.exit_code)
                for r in sorted(self.jobs.values(), key=lambda r: r.id) if not r.dropped]

    def for_beat(self) -> list[str]:
        """For a heartbeat: the ids of the runs we hold for the broker."""
        return sorted(r.id for r in self.jobs.values() if not r.dropped)[:protocol.MAX_LIST]

    def degraded(self) -> str:
        """Why this agent takes no new work now ("" : it does)."""
        return self.disk.full

    def busy(self) -> int:
        return sum(1 for r in self.jobs.values() if not r.state.ended)

    # the broker's messages --------------------------------------------------------------
    def assign(self, msg: protocol.Assign, slots: int) -> None:
        current = self.jobs.get(msg.job.id)
        if current is not None and current.never_started and current.state.ended:
            self.forget(current)       # nothing of it ran: the new attempt starts afresh
            current = None
        if current is not None and not current.dropped:
            self._assigned_again(current, msg.attempt)
            return
        if current is not None and not current.state.ended:
            # a dropped run of the same job: it must not write into the new attempt's files
            log.warning("job %s assigned again while its dropped run is stopping; killing it",
                        current.id)
            processes.signal_job(current.dir, processes.KILL)
            self.runner.kill(current.dir)
            current.move(RunState.FORGOTTEN)
        if self.busy() >= slots:
            log.warning("job %s assigned with all %d slots busy; running it anyway", msg.job.id,
                        slots)
        self._start(msg.job, msg.attempt, msg.account, msg.resume)

    def _assigned_again(self, run: Run, attempt: int) -> None:
        """DECISIONS 14: a repeated Assign never runs a job twice on this agent."""
        if run.state.ended:
            # it already ran here and the broker gave up waiting before our Started or Done
            # reached it (a slow agent): its end is this attempt's end, not a reason to rerun
            log.info("job %s already ran here (exit %d); reporting it as attempt %d", run.id,
                     run.exit_code, attempt)
        else:
            # the broker took our run for lost; it is still going: carry on under the new attempt
            log.info("job %s already running here; continuing it as attempt %d", run.id, attempt)
            run.missed = 0
        run.attempt = attempt
        self._record(run, attempt=attempt)
        self.send(protocol.Started(job_id=run.id, attempt=attempt, session=run.dir.status().session,
                                   pid=run.dir.pid(), **run.workspace.started()))
        if run.state.ended:
            self.send_done(run)

    def _start(self, job: protocol.JobSpec, attempt: int, account: str = "",
               resume: str = "") -> None:
        jd = JobDir(self.root, job.id)
        run = Run(dir=jd, attempt=attempt, timeout=job.timeout,
                  stall=stall.watch_for(self.cfg, job.project),
                  attention=attention.watch_for(self.cfg))
        self.jobs[job.id] = run
        try:
            jd.create(self.cfg, job, attempt, account, resume)
            run.workspace = worktrees.workspace_of(jd.path, jd.meta())
            session = self.runner.start(jd)
        except Exception as exc:  # neither the job's failure nor the agent's: the broker retries
            log.error("job %s never started: %s", job.id, exc)
            self.disk.failed(exc, time.monotonic())
            run.never_started = True
            self._ended(run, -1, f"runner: {exc}"[:protocol.MAX_LINE])
            return
        self.send(protocol.Started(job_id=job.id, attempt=attempt, session=session, pid=jd.pid(),
                                   **run.workspace.started()))
        log.info("job %s started (attempt %d) with the %s runner%s", job.id, attempt,
                 self.runner.name, f" in session {session}" if session else "")

    def cancel(self, job_id: str) -> None:
        run = self.jobs.get(job_id)
        if run is None:
            log.info("job %s: cancel for a job this agent does not hold", job_id)
        elif run.state is RunState.RUNNING:
            self.stop(run, "cancelled")

    def welcome(self, adopt: list[str], drop: list[str]) -> None:
        """A (re)started broker's answer to our Hello: which held runs it took back."""
        for job_id in drop:
            run = self.jobs.get(job_id)
            if run is None:
                continue
            run.dropped = True
            if run.state.ended:
                self.forget(run)
            elif run.state is RunState.RUNNING:
                log.info("job %s: the broker dropped it; stopping it", job_id)
                self.stop(run, "dropped by the broker")
        for job_id in adopt:
            run = self.jobs.get(job_id)
            if run is None:
                continue
            # the broker's beats already in flight were made before it adopted the job
            run.grace, run.missed = ADOPT_GRACE, 0
            run.signature = ()     # a restarted broker learns its progress and stall flag
            if run.state.ended:    # the held exit code was taken as its Done
                run.move(RunState.DONE_SENT)
                run.done_sent = time.monotonic()

    def broker_beat(self, listed: set[str], interval: float) -> None:
        """The broker's view of our jobs: acknowledges Done, reveals lost Dones and orphans."""
        now = time.monotonic()
        for run in list(self.jobs.values()):
            if run.dropped:
                continue
            if run.id in listed:
                run.missed = 0
                if run.state is RunState.DONE_SENT and now - run.done_sent > interval:
                    log.info("job %s: broker still lists it; sending Done again", run.id)
                    self.send_done(run)
            elif run.state is RunState.DONE_SENT:
                log.debug("job %s: Done acknowledged", run.id)
                self.forget(run)
            elif run.grace > 0:
                run.grace -= 1
            else:
                run.missed += 1
                if run.missed >= ORPHAN_BEATS and run.state is RunState.RUNNING:
                    log.warning("job %s: not listed in %d broker heartbeats; stopping the "
                                "orphan", run.id, run.missed)
                    self.stop(run, "orphan")

    # watching ---------------------------------------------------------------------------
    def check(self, job_ids: list[str], now: float) -> None:
        """The runner saw these jobs end: watch them now, not at the next tick."""
        for job_id in job_ids:
            run = self.jobs.get(job_id)
            if run is not None and not run.state.ended:
                self._watch(run, now)

    def watch(self, now: float) -> None:
        """Progress, the end, the timeout and the stop sequence of every run, each looked at
        every LOOK_EVERY seconds (not every turn of a busy loop: an end the runner tells of
        is looked at at once, through `check`)."""
        for run in list(self.jobs.values()):
            if not run.state.ended and now >= run.next_look:
                run.next_look = now + LOOK_EVERY
                self._watch(run, now)

    def _watch(self, run: Run, now: float) -> None:
        if not run.dropped:
            self._progress(run)
        code = run.dir.exit_code()
        if code is None and not self._alive(run):
            code = run.dir.exit_code()            # it may have ended between the two looks
            if code is None:
                run.reason = run.reason or "runner: process vanished"
                code = -1
        if code is not None:
            self.runner.reap(run.dir)
            self._ended(run, code)
            return
        if run.state is RunState.RUNNING:
            if run.attention is not None and now >= run.attention.next_check:
                self._check_attention(run, now)
            if run.stall is not None and now >= run.stall.next_check:
                self._check_stall(run, now)
            if run.state is RunState.RUNNING and run.timeout and now - run.started > run.timeout:
                log.info("job %s: timed out after %gs", run.id, run.timeout)
                self.stop(run, "timeout")
        if run.state.stopping:
            self._stopping(run, now)

    def _progress(self, run: Run) -> None:
        sig = run.dir.signature()
        if sig == run.signature:
            return
        run.signature = sig
        pct, message = run.dir.progress()
        if (pct, message) != run.progress:
            run.progress = (pct, message)
            self._record(run, sync=False, progress=pct, message=message)
        elif not sig[0]:
            return      # an empty output.log was made: nothing to tell yet
        if run.stall is not None and run.stall.stalled:    # the flag clears in this same report
            self._check_stall(run, time.monotonic(), report=False)
        self._send_progress(run)

    def _send_progress(self, run: Run) -> None:
        pct, message = run.progress
        watch, now = run.stall, time.monotonic()
        usage = outcome.seen(run.dir)
        attention = run.attention if run.attention and run.attention.flagged else None
        self.send(protocol.Progress(job_id=run.id, attempt=run.attempt, percent=pct,
                                    message=message, tail=run.dir.tail(self.tail_lines()),
                                    stalled=bool(watch and watch.stalled),
                                    stalled_for=watch.idle(now) if watch and watch.stalled else 0.0,
                                    usage=usage, needs_input=attention is not None,
                                    needs_input_lines=attention.lines[-protocol.MAX_TAIL_LINES:]
                                    if attention else [],
                                    base_commit=run.workspace.base_commit()))

    def _check_attention(self, run: Run, now: float) -> None:
        """Flag a job whose pane waits for a person; clear it when the pane moves on."""
        watch = run.attention
        assert watch is not None    # the caller checks: this run's pane is watched
        change = watch.look(self.runner.screen(run.dir), now)
        if change == "up":
            log.info("job %s needs input: %s", run.id, (watch.lines or ["?"])[-1][:200])
        elif change == "down":
            log.info("job %s: no longer waiting for input", run.id)
        if change and not run.dropped:
            self._send_progress(run)

    def _check_stall(self, run: Run, now: float, report: bool = True) -> None:
        """Flag (and with kill_on_stall stop) a job whose visible output stopped changing;
        a job waiting for a person is not stalled (its quiet is the person's)."""
        watch = run.stall
        assert watch is not None    # callers check: stall detection is on for this run
        screen = stall.fingerprint(self.runner, run.dir)
        if run.attention is not None and run.attention.flagged:
            screen = b"waiting " + str(now).encode()   # every look a change: the clock restarts
        change = watch.check(screen, now)
        if change == "stalled":
            log.warning("job %s: no output change for %.0fs; flagged stalled%s", run.id,
                        watch.idle(now), ", stopping it" if watch.kill else "")
            stall.snapshot(self.runner, run.dir, watch.idle(now))
            if watch.kill and run.state is RunState.RUNNING:
                self.stop(run, "stalled")
        elif change == "resumed":
            log.info("job %s: output again; no longer stalled", run.id)
        if change and report and not run.dropped:
            self._send_progress(run)

    # stopping ---------------------------------------------------------------------------
    def stop(self, run: Run, reason: str) -> None:
        """Begin stopping: SIGTERM now (or as soon as the command's pid is known)."""
        run.move(RunState.STOPPING)
        run.reason, run.stop_at = reason, time.monotonic()
        run.dir.set_status(reason=reason)     # the wrapper's end commit says why it ended
        log.info("job %s: stopping (%s)", run.id, reason)
        self._stopping(run, run.stop_at)

    def _stopping(self, run: Run, now: float) -> None:
        """The stop sequence's next step once its time has come."""
        grace = self.cfg.agent.kill_grace
        if run.state is RunState.STOPPING:
            if processes.signal_job(run.dir, processes.TERM):
                run.move(RunState.TERM_SENT)
                run.stop_deadline = now + grace
            elif now - run.stop_at > grace:   # the command's pid never showed up
                self._runner_kill(run)
        elif run.state is RunState.TERM_SENT and now >= run.stop_deadline:
            log.warning("job %s: still running %gs after SIGTERM; SIGKILL", run.id, grace)
            processes.signal_job(run.dir, processes.KILL)
            run.move(RunState.KILL_SENT)
            run.stop_deadline = now + grace
        elif run.state is RunState.KILL_SENT and now >= run.stop_deadline:
            self._runner_kill(run)

    def _runner_kill(self, run: Run) -> None:
        log.warning("job %s: its wrapper did not end; removing it with the %s runner", run.id,
                    self.runner.name)
        run.move(RunState.RUNNER_KILLED)
        self.runner.kill(run.dir)

    # the end ----------------------------------------------------------------------------
    def _ended(self, run: Run, code: int, reason: str = "") -> None:
        run.move(RunState.ENDED)
        run.exit_code = code
        if run.dropped:
            log.info("job %s: dropped run ended (exit %d); forgotten", run.id, code)
            self.forget(run)
            return
        reason = reason or run.reason or run.workspace.failure()
        if reason == "orphan":   # the broker forgot it: for the broker it is a kill
            reason = "cancelled"
        run.reason = reason
        if reason or run.never_started or run.dir.fresh:
            # what the exit status does not say (a plain end it does: re-adoption reads it)
            self._record(run, state=AttemptState.NEVER_STARTED if run.never_started
                         else AttemptState.EXITED, exit_code=code, reason=reason,
                         finished_at=time.time())
        self.send_done(run)
        log.info("job %s ended: exit %d%s", run.id, code, f" ({reason})" if reason else "")

    def send_done(self, run: Run) -> None:
        run.move(RunState.DONE_SENT)
        run.done_sent = time.monotonic()
        code = run.exit_code if run.exit_code is not None else -1
        if run.usage is None:     # once per run: a Done sent again says the same
            run.usage, limit = outcome.ended(self.cfg, run.dir, code)
            if limit is not None and run.reason in ("", "stalled"):
                run.limited_until, run.limit = limit.until, limit.line[:protocol.MAX_LINE]
        self.send(protocol.Done(job_id=run.id, attempt=run.attempt, exit_code=code,
                                reason=run.reason[:protocol.MAX_LINE],
                                tail=run.dir.tail(self.tail_lines()), usage=run.usage,
                                limited_until=run.limited_until, limit=run.limit,
                                started=not run.never_started, **run.workspace.done()))

    def forget(self, run: Run) -> None:
        """The broker has this job's end (or never wanted it): no longer ours to report."""
        run.move(RunState.FORGOTTEN)
        self.jobs.pop(run.id, None)
        try:
            run.dir.acknowledged()
        except OSError as exc:
            log.warning("job %s: cannot mark it acknowledged: %s", run.id, exc)
            self.disk.failed(exc, time.monotonic())

    def _record(self, run: Run, sync: bool = False, **fields) -> None:
        """Note `fields` in the run's record when the disk lets us: the exit status
        and our memory are what matter, and a full disk must not end the agent."""
        try:
            run.dir.set_status(sync=sync, **fields)
        except OSError as exc:
            log.warning("job %s: cannot update its status.json: %s", run.id, exc.strerror or exc)
            self.disk.failed(exc, time.monotonic())

    def _alive(self, run: Run) -> bool:
        return processes.wrapper_alive(run.dir) if run.by_pid else self.runner.alive(run.dir)

    def tail_lines(self) -> int:
        return max(0, min(self.cfg.agent.tail_lines, protocol.MAX_TAIL_LINES))
