"""The broker's loop: one thread, one zmq.Poller, no locks.

Each turn: receive what is ready (at most `broker.batch` messages per socket), apply it to
the in-memory model and the store's open transaction, run the scheduler, commit once
(group commit), and only then act: send Assign and replies, publish events, unlink the
spool files of committed submissions. Periodic work (heartbeats, liveness, spool sweep,
retries, pruning) is `tick(now)`, which tests may call directly.
"""

from __future__ import annotations

import heapq
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import zmq

from luzia import __version__, layout, protocol, rpc
from luzia.broker import control, curve, gpu, lock, metrics, rebuild, spool
from luzia.broker.agents import AgentHandler
from luzia.broker.fleet import Fleet
from luzia.broker.routing import detect_type
from luzia.broker.scheduler import SchedJob, Scheduler
from luzia.broker.store import Job, Store
from luzia.config import Config, ensure_private_dir
from luzia.errors import ProtocolError, StateDirError, StoreError
from luzia.states import JobState

log = logging.getLogger(__name__)

PRUNE_EVERY = 60.0          # seconds between history prunes
RETRY_BACKOFF_MAX = 300.0
PREEMPTED_BY = "preempted by "   # a held job's reason while it is stopped for a critical job


class Broker:
    """Owns job state, the queue and the load balancer. Construct, then `run()`."""

    def __init__(self, cfg: Config, ctx: zmq.Context | None = None) -> None:
        self.cfg = cfg
        self.started = time.monotonic()
        self.home = ensure_private_dir(Path(cfg.home))
        ensure_private_dir(cfg.run_dir)
        self.spool = spool.Spool(ensure_private_dir(cfg.spool_dir))
        self._lock = lock.hold(self.home)
        try:
            self.store = Store(cfg.broker.db)       # refuses a damaged or newer one; migrates
            rebuild.if_needed(self.store, cfg)      # a lost database: jobs from their job dirs
        except BaseException:
            os.close(self._lock)
            raise
        self.sched = Scheduler(cfg.scheduler)
        self.fleet = Fleet()
        self.drained = self.store.drained()     # an operator's drains outlive a restart
        self.jobs: dict[str, Job] = {}          # every unfinished job
        self.retry_at: list[tuple[float, str]] = []   # heap of (monotonic due, job id)
        # running jobs being stopped -> the critical job they make room for ("": a user's cancel)
        self.stopping: dict[str, str] = {}
        self.bad = {name: rpc.BadFrames(log, f"{name} socket") for name in ("submit", "agents", "control")}
        self.counters = {"submissions": 0, "duplicates": 0, "rejections": 0}
        self.outbox: list[tuple[zmq.Socket, list[bytes]]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.unlink: list[Path] = []
        self.log_waits: dict[int, control.LogWait] = {}   # logs.read waiting for an agent
        self.dirty = True                        # something may be schedulable
        self.queue_full_mark = cfg.run_dir / layout.QUEUE_FULL
        self.queue_full_mark.unlink(missing_ok=True)
        self.queue_full = False
        self.running = False
        self._next = {"beat": 0.0, "sweep": 0.0, "prune": time.monotonic() + PRUNE_EVERY}
        self.agents = AgentHandler(self)
        self._own_ctx = ctx is None
        self.ctx = ctx or zmq.Context()
        self._bind()
        self._restore()
        self.metrics = metrics.serve(self)      # None unless broker.metrics_port is set

    # set-up -------------------------------------------------------------------
    def _socket(self, kind: int, endpoint: str, name: str) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        if self.server_keys is not None:
            self.server_keys.apply(sock)
        sock.setsockopt(zmq.MAXMSGSIZE, self.cfg.broker.max_msg_size)
        if kind == zmq.ROUTER:
            sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        if kind in (zmq.PULL, zmq.ROUTER):
            sock.setsockopt(zmq.RCVHWM, 100_000)
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            sock.close()
            raise StateDirError(f"cannot listen on {endpoint} ({name}): {exc}") from None
        if endpoint.startswith("ipc://"):
            os.chmod(endpoint[len("ipc://"):], 0o600)
        return sock

    def _bind(self) -> None:
        ep = self.cfg.endpoints
        self.server_keys = curve.broker_keys(self.cfg, self.ctx, {
            "submit": ep.submit, "agents": ep.agents, "control": ep.control, "events": ep.events})
        self.pull = self._socket(zmq.PULL, ep.submit, "submit")
        self.router = self._socket(zmq.ROUTER, ep.agents, "agents")
        self.control = self._socket(zmq.ROUTER, ep.control, "control")
        self.pub = self._socket(zmq.PUB, ep.events, "events")
        self.poller = zmq.Poller()
        for sock in (self.pull, self.router, self.control):
            self.poller.register(sock, zmq.POLLIN)

    def _restore(self) -> None:
        """Rebuild the in-memory model from the store after a (re)start."""
        for job in self.store.unfinished():
            self.jobs[job.id] = job
        done = {j.id for j in self.jobs.values()}
        for job in self.jobs.values():
            if job.state is JobState.PENDING:
                self._enqueue(job, pending_deps=[d for d in job.after if d in done])
            else:   # assigned / running / lost: the credit stays taken until its agent says
                self.agents.restore(job)
                if job.reason.startswith(PREEMPTED_BY):     # it was being stopped: still is
                    self.stopping[job.id] = job.reason[len(PREEMPTED_BY):]
        log.info("broker %s up: %d unfinished jobs restored from %s", __version__,
                 len(self.jobs), self.cfg.broker.db)

    # loop ---------------------------------------------------------------------
    def run(self) -> None:
        self.running = True
        try:
            self.sweep_spool()
            while self.running:
                self.turn()
        except (sqlite3.DatabaseError, StoreError) as exc:   # cannot be saved: stop before acting
            failure = self.store.abandon(exc)
            self.close()
            raise failure from None
        self.close()

    def stop(self) -> None:
        self.running = False

    def turn(self, timeout: float | None = None) -> None:
        """One loop turn: receive, decide, commit, act."""
        now = time.monotonic()
        if timeout is None:
            timeout = max(0.0, min(self._next["beat"], self._next["sweep"],
                                   self.retry_at[0][0] if self.retry_at else now + 1) - now)
        ready = dict(self.poller.poll(timeout * 1000))
        if self.pull in ready:
            self._drain(self.pull, "submit", self._on_submit_frames)
        if self.router in ready:
            self._drain(self.router, "agents", self.agents.on_frames)
        if self.control in ready:
            self._drain(self.control, "control", self._on_control_frames)
        self.tick(time.monotonic())
        self.dispatch()
        self.flush()

    def _drain(self, sock: zmq.Socket, name: str, handle) -> None:
        for _ in range(self.cfg.broker.batch):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                handle(frames)
            except ProtocolError as exc:
                self.bad_frame(name, str(exc))

    def bad_frame(self, socket_name: str, why: str) -> None:
        """Count and log (rate-limited) a frame that was dropped."""
        self.bad[socket_name].drop(why)

    @property
    def bad_frames(self) -> dict[str, int]:
        return {name: bad.count for name, bad in self.bad.items()}

    def flush(self) -> None:
        """Commit, then act on what was committed."""
        self.store.commit()
        for sock, frames in self.outbox:
            try:
                sock.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                log.warning("peer queue full, message dropped (it will be retried by reconciliation)")
            except zmq.ZMQError as exc:
                log.warning("send failed: %s", exc)
        self.outbox.clear()
        for topic, data in self.events:
            self.pub.send_multipart(protocol.encode_event(topic, data))
        self.events.clear()
        for path in self.unlink:
            self.spool.remove(path)
        self.unlink.clear()
        self._mark_queue_full()

    def _mark_queue_full(self) -> None:
        """run/queue-full exists while submissions are rejected for a full queue: a CLI on
        this host that sees it asks what became of its job, and reports a rejection."""
        limit = self.cfg.broker.max_pending
        full = bool(limit) and self.sched.pending_count() >= limit
        if full != self.queue_full:
            self.queue_full = full
            if full:
                self.queue_full_mark.write_text(f"max_pending={limit}\n")
            else:
                self.queue_full_mark.unlink(missing_ok=True)

    def tick(self, now: float) -> None:
        if now >= self._next["beat"]:
            self._next["beat"] = now + self.cfg.broker.heartbeat_interval
            self.agents.beat(now)
            self.preempt(now)
        if now >= self._next["sweep"]:
            self._next["sweep"] = now + self.cfg.broker.spool_sweep
            self.sweep_spool()
        while self.retry_at and self.retry_at[0][0] <= now:
            _, job_id = heapq.heappop(self.retry_at)
            job = self.jobs.get(job_id)
            if job is not None and job.state is JobState.PENDING:
                self._enqueue(job)
        if self.sched.expire(now):      # a user's lock went stale: its next job may start
            self.dirty = True
        control.expire_log_waits(self, now)
        if self.metrics:
            self.metrics.tick(self, now)
        if now >= self._next["prune"]:
            self._next["prune"] = now + PRUNE_EVERY
            pruned = self.store.prune(self.cfg.max_jobs)
            if pruned:
                log.info("pruned %d finished jobs beyond max_jobs=%d", pruned, self.cfg.max_jobs)

    def close(self) -> None:
        if self.metrics:
            self.metrics.close()
        self.store.close()
        for sock in (self.pull, self.router, self.control, self.pub):
            sock.close(0)
        if self.server_keys is not None:
            self.server_keys.stop()
        if self._own_ctx:
            self.ctx.term()
        os.close(self._lock)

    # output helpers -------------------------------------------------------------
    def send_agent(self, identity: bytes, msg: protocol.Message) -> None:
        self.outbox.append((self.router, [identity, *protocol.encode(msg)]))

    def reply(self, identity: bytes, msg: protocol.Reply) -> None:
        self.outbox.append((self.control, [identity, *protocol.encode(msg)]))

    def publish(self, job: Job) -> None:
        self.events.append((f"job.{job.state.value}", job.summary()))

    def publish_agent(self, state: str, data: dict[str, Any]) -> None:
        self.events.append((f"agent.{state}", data))

    # submissions ----------------------------------------------------------------
    def _on_submit_frames(self, frames: list[bytes]) -> None:
        msg = protocol.decode(frames, expect=(protocol.Submit,))
        self.submit(msg.job)  # type: ignore[attr-defined]

    def sweep_spool(self) -> None:
        for path, msg in self.spool.scan():
            if msg.job.id in self.jobs:
                self.unlink.append(path)
                continue
            self.submit(msg.job, path)

    def submit(self, spec: protocol.JobSpec, spool_path: Path | None = None) -> Job | None:
        """Take a submission (idempotent by id); its spool file goes once committed."""
        if spool_path is None:
            spool_path = self.spool.path_for(spec.id)
        self.unlink.append(spool_path)
        if spec.id in self.jobs:
            self.counters["duplicates"] += 1
            return None
        now = time.time()
        sched = self.cfg.scheduler
        kind = spec.type or detect_type(spec.task, sched.type_rules, sched.default_type)
        job = Job(id=spec.id, seq=self.store.next_seq, project=spec.project, user=spec.user,
                  task=spec.task, priority=spec.priority, type=kind,
                  # no --timeout and none from the project: the task type's default, else the global
                  timeout=spec.timeout or sched.timeouts.get(kind) or self.cfg.timeout,
                  max_retries=spec.max_retries, workdir=spec.workdir,
                  submitted_at=spec.submitted_at or now, after=list(spec.after),
                  metadata=dict(spec.metadata), updated_at=now)
        reject = self._refusal(job)
        if reject:
            job.state = JobState.REJECTED
            job.reason = reject
            job.finished_at = now
        if not self.store.insert(job):
            self.counters["duplicates"] += 1
            return None
        self.counters["submissions"] += 1
        self.publish(job)
        if reject:
            self.counters["rejections"] += 1
            log.warning("job %s rejected: %s", job.id, reject)
            return job
        self.jobs[job.id] = job
        log.info("job %s pending: project=%s user=%s priority=%d type=%s", job.id, job.project,
                 job.user, job.priority, job.type)
        deps = self._dependency_states(job)
        failed = [d for d, s in deps.items() if s is not None and s.terminal
                  and s is not JobState.COMPLETED]
        if failed:
            self.finish(job, JobState.FAILED, f"dependency {failed[0]} {deps[failed[0]].value}")
            return job
        self._enqueue(job, pending_deps=[d for d, s in deps.items() if s is not JobState.COMPLETED])
        return job

    def _refusal(self, job: Job) -> str:
        limit = self.cfg.broker.max_pending
        if limit and self.sched.pending_count() >= limit:
            return f"queue full ({self.sched.pending_count()} pending, max_pending={limit})"
        unknown = [d for d in job.after if d not in self.jobs and self.store.get(d) is None]
        if unknown:
            return f"unknown dependency {unknown[0]}"
        return ""

    def _dependency_states(self, job: Job) -> dict[str, JobState | None]:
        states: dict[str, JobState | None] = {}
        missing = []
        for dep in job.after:
            if dep in self.jobs:
                states[dep] = None     # unfinished
            else:
                missing.append(dep)
        states.update(self.store.states_of(missing))
        return states

    def _enqueue(self, job: Job, pending_deps: list[str] | None = None) -> None:
        after = frozenset(job.after if pending_deps is None else pending_deps)
        after = frozenset(d for d in after if d in self.jobs)
        self.sched.add(SchedJob(id=job.id, seq=job.seq, priority=job.priority, user=job.user,
                                project=job.project, type=job.type, after=after,
                                submitted=time.monotonic(),
                                gpu_mem_gb=gpu.need(self.cfg.scheduler, job.type, job.metadata),
                                avoid=self._failed_on(job)))
        self.dirty = True

    def _failed_on(self, job: Job) -> frozenset[str]:
        """The agents an earlier attempt of `job` failed on: its retry prefers the others."""
        if not job.attempt:
            return frozenset()
        return frozenset(a["host"] for a in self.store.attempts(job.id)
                         if a["host"] and a["exit_code"] not in (None, 0))

    # decisions --------------------------------------------------------------------
    def dispatch(self) -> None:
        if not self.dirty:
            return
        self.dirty = False
        now = time.monotonic()
        while True:
            picked = self.sched.pick(now)
            if picked is None:
                return
            job_id, agent_name = picked
            self.agents.assign(self.jobs[job_id], agent_name)

    def preempt(self, now: float) -> None:
        """Stop the low jobs the scheduler names for critical jobs that waited too long on a
        full host (scheduler.preempt); each goes back to pending when its agent says it ended."""
        if not self.cfg.scheduler.preempt:
            return
        making_room = set(self.stopping.values())
        for critical, victim in self.sched.preemptions(now):
            job = self.jobs.get(victim)
            if (victim in self.stopping or critical in making_room or job is None
                    or job.state not in (JobState.ASSIGNED, JobState.RUNNING)):
                continue        # already being stopped, or its agent is not there to stop it
            self.stopping[victim] = critical
            making_room.add(critical)
            job.reason = PREEMPTED_BY + critical        # shown while it stops; kept over a restart
            self.store.save(job, f"preempting: {critical} (critical) waits for {job.host}")
            self.publish(job)
            self.agents.cancel(job, reason=job.reason)
            log.info("job %s preempted by %s on %s: stopping it", victim, critical, job.host)

    def preempted(self, job: Job, exit_code: int, critical: str) -> None:
        """A preempted job stopped: pending again, to run as a new attempt (not a failure)."""
        job.exit_code = exit_code           # requeue() records the attempt with it
        self.requeue(job, PREEMPTED_BY + critical)

    def finish(self, job: Job, state: JobState, reason: str = "",
               exit_code: int | None = None) -> None:
        """A job reached a terminal state: persist, free its credit, settle its dependents."""
        was_pending = job.state is JobState.PENDING
        self.stopping.pop(job.id, None)
        job.move(state, reason)
        job.finished_at = time.time()
        if exit_code is not None:
            job.exit_code = exit_code
        if was_pending:
            self.sched.remove(job.id)
        elif job.host:
            self.agents.release(job)
        self.store.save(job, reason)
        if job.attempt:
            self.store.save_attempt(job, reason)
        self.jobs.pop(job.id, None)
        self.publish(job)
        log.info("job %s %s%s", job.id, state.value, f": {reason}" if reason else "")
        self.dirty = True
        for dependent in self.sched.resolve(job.id, state is JobState.COMPLETED):
            dep_job = self.jobs.get(dependent)
            if dep_job is not None:
                self.finish(dep_job, JobState.FAILED, f"dependency {job.id} {state.value}")

    def ended(self, job: Job, exit_code: int, reason: str) -> None:
        """An attempt ended on its agent: completed, killed, preempted, retried or failed."""
        preempted_by = self.stopping.pop(job.id, "")
        if exit_code == 0 and not reason:
            self.finish(job, JobState.COMPLETED, "", exit_code)
        elif preempted_by:                    # stopped for a critical job, whatever it says
            self.preempted(job, exit_code, preempted_by)
        elif reason == "cancelled":
            self.finish(job, JobState.KILLED, "cancelled", exit_code)
        elif job.retries < job.max_retries:
            job.exit_code = exit_code
            self.agents.release(job)
            job.finished_at = time.time()
            self.store.save_attempt(job, reason or f"exit {exit_code}")
            job.retries += 1
            job.move(JobState.PENDING, f"retry {job.retries}/{job.max_retries} after "
                                       f"{reason or f'exit {exit_code}'}")
            job.host = ""
            delay = min(RETRY_BACKOFF_MAX, 2.0 ** (job.retries - 1))
            heapq.heappush(self.retry_at, (time.monotonic() + delay, job.id))
            self.store.save(job, job.reason)
            self.publish(job)
            log.info("job %s will retry in %.1fs (%s)", job.id, delay, job.reason)
        else:
            self.finish(job, JobState.FAILED, reason or f"exit code {exit_code}", exit_code)

    def requeue(self, job: Job, reason: str) -> None:
        """Put an assigned/running/lost job back in the queue (its agent is gone, or it was
        preempted)."""
        self.stopping.pop(job.id, None)
        self.agents.release(job)
        job.finished_at = time.time()       # the attempt on the lost agent ends here, for the record
        self.store.save_attempt(job, reason)
        job.finished_at = None
        job.move(JobState.PENDING, reason)
        job.host = ""
        job.stalled = False
        self.store.save(job, reason)
        self.publish(job)
        self._enqueue(job)
        log.info("job %s requeued: %s", job.id, reason)

    def cancel(self, job: Job) -> str:
        if job.state is JobState.PENDING:
            self.finish(job, JobState.KILLED, "cancelled")
            return "killed"
        self.stopping[job.id] = ""       # a user's cancel wins over a preemption
        if job.reason.startswith(PREEMPTED_BY):
            job.reason = ""
            self.store.save(job)
        self.agents.cancel(job)
        return "cancelling"

    # control ------------------------------------------------------------------------
    def _on_control_frames(self, frames: list[bytes]) -> None:
        req = rpc.parse(frames)
        try:
            control.handle(self, frames[0], req)
        except sqlite3.DatabaseError as exc:    # a damaged page fails this request, not the broker
            self.reply(frames[0], rpc.failure(req.req, self.store.query_failed(exc)))

    def uptime(self) -> float:
        return time.monotonic() - self.started

