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
from collections.abc import Callable
from pathlib import Path

import zmq

from luzia import __version__, layout, protocol, rpc
from luzia.broker import (
    curve,
    intake,
    lifecycle,
    lock,
    metrics,
    ops,
    peers,
    rebuild,
    spool,
    versions,
    workspace,
)
from luzia.broker.agents import AgentHandler
from luzia.broker.fleet import Fleet
from luzia.broker.job import Job
from luzia.broker.model import BrokerModel
from luzia.broker.ops import logs
from luzia.broker.scheduler import Scheduler
from luzia.broker.store import Store
from luzia.config import Config, ensure_private_dir
from luzia.errors import LuziaError, ProtocolError, StoreError
from luzia.identity import Submitter
from luzia.service import SocketFiles
from luzia.states import JobState

log = logging.getLogger(__name__)

PRUNE_EVERY = 60.0          # seconds between history prunes
BUDGET_CHECK_EVERY = 10.0   # seconds between looks for a new budget day (UTC midnight)
SOCKETS = ("submit", "agents", "control")   # the sockets the broker reads
_SUBMIT = (protocol.Submit,)
_SNDMORE = int(zmq.SNDMORE)


class Broker:
    """Owns the sockets, the loop and the commit; the model it keeps is `self.model`
    (model.py), changed only through lifecycle.py, agents.py and ops/. Construct, then
    `run()`."""

    def __init__(self, cfg: Config, ctx: zmq.Context | None = None) -> None:
        self.cfg = cfg
        versions.check(cfg)
        self.home = ensure_private_dir(Path(cfg.home))
        ensure_private_dir(cfg.run_dir)
        self.spool = spool.Spool(ensure_private_dir(cfg.spool_dir))
        self._lock = lock.hold(self.home)
        try:
            store = Store(cfg.broker.db)        # refuses a damaged or newer one; migrates
            rebuild.if_needed(store, cfg)       # a lost database: jobs from their job dirs
        except BaseException:
            os.close(self._lock)
            raise
        sched = Scheduler(cfg.scheduler)
        bad = {name: rpc.BadFrames(log, f"{name} socket") for name in SOCKETS}
        self.model = BrokerModel(cfg, store, sched, Fleet(sched, store.drained()), bad=bad)
        self.agents = AgentHandler(self.model, logs.on_chunk)
        self.queue_full_mark = cfg.run_dir / layout.QUEUE_FULL
        self.queue_full_mark.unlink(missing_ok=True)
        self.queue_full = False
        self.running = False
        self._next = {"beat": 0.0, "sweep": 0.0, "prune": time.monotonic() + PRUNE_EVERY}
        self._next_budget_check = 0.0
        self._own_ctx = ctx is None
        self.ctx = ctx or zmq.Context()
        self.files = SocketFiles(log)      # bound again if a tmp cleaner deletes them
        self.peers = peers.Peers(cfg)       # who sent a submission or a request
        self.ipc = {name: getattr(cfg.endpoints, name).startswith("ipc://") for name in SOCKETS}
        self._bind()
        self.spool.claim(cfg.endpoints.submit)     # CLIs with this home spool here
        self._restore()
        self.metrics = metrics.serve(cfg.broker)      # None unless broker.metrics_port is set
        self._pick = self.metrics.timed(sched.pick) if self.metrics else sched.pick

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
        return self.files.bind(sock, endpoint, 0o600, name)

    def _bind(self) -> None:
        ep = self.cfg.endpoints
        self.server_keys = curve.broker_keys(self.cfg, self.ctx, {
            "submit": ep.submit, "agents": ep.agents, "control": ep.control, "events": ep.events})
        self.pull = self._socket(zmq.PULL, ep.submit, "submit")
        self.router = self._socket(zmq.ROUTER, ep.agents, "agents")
        self.control = self._socket(zmq.ROUTER, ep.control, "control")
        # XPUB, not PUB: the same to a subscriber, but the broker learns the topics anyone
        # subscribes to and does not encode a flood's events nobody would receive
        self.pub = self._socket(zmq.XPUB, ep.events, "events")
        self.watched: set[bytes] = set()     # the topic prefixes subscribed to
        self.poller = zmq.Poller()
        for sock in (self.pull, self.router, self.control):
            self.poller.register(sock, zmq.POLLIN)

    def _restore(self) -> None:
        """Rebuild the in-memory model from the store after a (re)start."""
        m = self.model
        for job in m.store.unfinished():
            m.jobs[job.id] = job
        for job in m.jobs.values():
            lifecycle.restore(m, job)
        workspace.restore(m)
        log.info("broker %s up: %d unfinished jobs restored from %s", __version__,
                 len(m.jobs), self.cfg.broker.db)

    # loop ---------------------------------------------------------------------
    def run(self) -> None:
        self.running = True
        try:
            self.sweep_spool()
            while self.running:
                self.turn()
        except (sqlite3.DatabaseError, StoreError) as exc:   # cannot be saved: stop before acting
            failure = self.model.store.abandon(exc)
            self.close()
            raise failure from None
        self.close()

    def stop(self) -> None:
        self.running = False

    def turn(self, timeout: float | None = None) -> None:
        """One loop turn: receive, decide, commit, act."""
        now = time.monotonic()
        if timeout is None:
            retry_at, resume_at = self.model.retry_at, self.model.resume_at
            timeout = max(0.0, min(self._next["beat"], self._next["sweep"],
                                   retry_at[0][0] if retry_at else now + 1,
                                   now + resume_at[0][0] - time.time() if resume_at else now + 1)
                          - now)
        ready = dict(self.poller.poll(int(timeout * 1000)))
        if self.pull in ready:
            self._take_submissions()
        if self.router in ready:
            self._drain(self.router, "agents", self.agents.on_frames)
        if self.control in ready:
            self._drain(self.control, "control", self._on_control_frames, identify=True)
        self.tick(time.monotonic())
        self.dispatch()
        self.flush()

    def _drain(self, sock: zmq.Socket, name: str, handle: Callable[..., None],
               identify: bool = False) -> None:
        """Handle what `sock` has (at most a batch); with `identify`, with who sent each."""
        sender: tuple[Submitter, ...]
        for _ in range(self.cfg.broker.batch):
            try:
                if identify:
                    frames, first = peers.receive(sock)
                    sender = (self.peers.of_frame(first, self.ipc[name]),)
                else:
                    frames, sender = sock.recv_multipart(zmq.NOBLOCK), ()
            except zmq.Again:
                return
            try:
                handle(frames, *sender)
            except ProtocolError as exc:
                self.model.bad[name].drop(str(exc))     # counted, logged rate-limited

    def flush(self) -> None:
        """Commit, then act on what was committed."""
        out = self.model.out
        self.model.store.commit()
        for sock, queue in ((self.router, out.to_agents), (self.control, out.replies)):
            for frames in queue:
                _send(sock, frames)
            queue.clear()
        self._subscriptions()
        if self.watched:
            prefixes = tuple(self.watched)
            for topic, data in out.events:
                if topic.encode().startswith(prefixes):
                    _publish(self.pub, protocol.encode_event(topic, data))
        out.events.clear()
        self.spool.remove(out.unspool)
        out.unspool.clear()
        self._mark_queue_full()

    def _subscriptions(self) -> None:
        """Take the (un)subscriptions waiting on the XPUB socket: a first byte 1 subscribes
        to the prefix after it, 0 drops it (XPUB passes the first subscription to a prefix
        and the last one's end). Read just before the events are sent, so an event goes to
        every subscription that had reached the socket, as with PUB."""
        while True:
            try:
                frame = self.pub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if frame[:1] == b"\x01":
                self.watched.add(frame[1:])
            elif frame[:1] == b"\x00":
                self.watched.discard(frame[1:])

    def _mark_queue_full(self) -> None:
        """run/queue-full exists while submissions are rejected for a full queue: a CLI on
        this host that sees it asks what became of its job, and reports a rejection. The
        change is published too (`queue.rejecting` / `queue.accepting`: luzia-notify)."""
        limit = self.cfg.broker.max_pending
        full = intake.queue_full(self.model)
        if full != self.queue_full:
            self.queue_full = full
            if full:
                self.queue_full_mark.write_text(f"max_pending={limit}\n")
            else:
                self.queue_full_mark.unlink(missing_ok=True)
            self.pub.send_multipart(protocol.encode_event(
                "queue.rejecting" if full else "queue.accepting",
                {"pending": self.model.sched.pending_count(), "max_pending": limit}))

    def tick(self, now: float) -> None:
        """Periodic work: heartbeats and preemption, the spool sweep, retries whose backoff
        is over, stale user locks, logs.read deadlines, metrics, history pruning."""
        m = self.model
        if now >= self._next["beat"]:
            self._next["beat"] = now + self.cfg.broker.heartbeat_interval
            self.agents.beat(now)
            lifecycle.preempt(m, now)
        if now >= self._next["sweep"]:
            self._next["sweep"] = now + self.cfg.broker.spool_sweep
            self.sweep_spool()
        self.files.check(now)
        while m.retry_at and m.retry_at[0][0] <= now:
            _, job_id = heapq.heappop(m.retry_at)
            job = m.jobs.get(job_id)
            if job is not None and job.state is JobState.PENDING:
                lifecycle.enqueue(m, job)
        self._resets(time.time())
        if m.sched.expire(now):      # a user's lock went stale: its next job may start
            m.dirty = True
        logs.expire(m, now)
        if self.metrics:
            self.metrics.tick(m, now)
        if now >= self._next["prune"]:
            self._next["prune"] = now + PRUNE_EVERY
            pruned = m.store.prune(self.cfg.max_jobs)
            if pruned:
                log.info("pruned %d finished jobs beyond max_jobs=%d", pruned, self.cfg.max_jobs)

    def _resets(self, wall: float) -> None:
        """Usage limits and budgets whose time has come: accounts free again, paused jobs
        back in the queue, a new day's or month's budgets (docs/AGENTS.md)."""
        m = self.model
        if m.accounts.expire(wall):
            m.dirty = True
        while m.resume_at and m.resume_at[0][0] <= wall:
            _, job_id = heapq.heappop(m.resume_at)
            job = m.jobs.get(job_id)
            if job is not None and job.state is JobState.PAUSED:
                lifecycle.unpause(m, job)
        if wall >= self._next_budget_check:
            self._next_budget_check = wall + BUDGET_CHECK_EVERY
            if m.budgets.tick(wall):
                m.dirty = True

    def dispatch(self) -> None:
        """Start what the scheduler picks, until nothing more can start."""
        m = self.model
        if not m.dirty:
            return
        m.dirty = False
        now = time.monotonic()
        while (picked := self._pick(now)) is not None:
            job_id, agent_name = picked
            agent = m.fleet.get(agent_name)
            if agent is None:       # the scheduler knows no agent the fleet does not
                raise LuziaError(f"scheduler picked unknown agent {agent_name}")
            lifecycle.assign(m, m.jobs[job_id], agent)

    def close(self) -> None:
        if self.metrics:
            self.metrics.close()
        self.model.store.close()
        for sock in (self.pull, self.router, self.control, self.pub):
            sock.close(0)
        if self.server_keys is not None:
            self.server_keys.stop()
        if self._own_ctx:
            self.ctx.term()
        os.close(self._lock)

    # submissions ----------------------------------------------------------------
    def _take_submissions(self) -> None:
        """The submissions waiting on the submit socket (at most `broker.batch`), decoded
        with who sent each (peers.py), then taken together (intake.accept_all)."""
        specs: list[protocol.JobSpec] = []
        by: list[Submitter | None] = []
        ipc = self.ipc["submit"]
        for _ in range(self.cfg.broker.batch):
            try:
                frames, first = peers.receive(self.pull)
            except zmq.Again:
                break
            try:
                specs.append(protocol.decode(frames, expect=_SUBMIT).job)  # type: ignore[attr-defined]
            except ProtocolError as exc:
                self.model.bad["submit"].drop(str(exc))     # counted, logged rate-limited
                continue
            by.append(self.peers.of_frame(first, ipc))
        self.submit_all(specs, by)

    def sweep_spool(self) -> None:
        found = list(self.spool.scan())
        self.submit_all([msg.job for _, msg, _ in found],
                        [self.peers.of_uid(owner) for _, _, owner in found])  # who wrote each

    def submit(self, spec: protocol.JobSpec, by: Submitter | None = None) -> Job | None:
        """Take a submission (intake.accept) from `by` (None: not checked, as in tests);
        its spool file goes once committed."""
        return self.submit_all([spec], [by])[0]

    def submit_all(self, specs: list[protocol.JobSpec],
                   by: list[Submitter | None] | None = None) -> list[Job | None]:
        """Take submissions (intake.accept_all; a job the broker has is a no-op), each
        from its `by`; their spool files go once committed."""
        self.model.out.unspool.extend(s.id for s in specs)
        return intake.accept_all(self.model, specs, by)

    # control ------------------------------------------------------------------------
    def _on_control_frames(self, frames: list[bytes], peer: Submitter) -> None:
        req = rpc.parse(frames)
        try:
            ops.handle(self.model, frames[0], req, peer)
        except sqlite3.DatabaseError as exc:    # a damaged page fails this request, not the broker
            self.model.out.reply(frames[0], rpc.failure(req.req, self.model.store.query_failed(exc)))


def _publish(sock: zmq.Socket, frames: list[bytes]) -> None:
    """send_multipart without its per-frame flag arithmetic on enums (a tenth of a busy
    turn's time, one event per job)."""
    for frame in frames[:-1]:
        sock.send(frame, _SNDMORE)
    sock.send(frames[-1])


def _send(sock: zmq.Socket, frames: list[bytes]) -> None:
    try:
        sock.send_multipart(frames, zmq.NOBLOCK)
    except zmq.Again:
        log.warning("peer queue full, message dropped (it will be retried by reconciliation)")
    except zmq.ZMQError as exc:
        log.warning("send failed: %s", exc)
