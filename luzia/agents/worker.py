"""The agent's loop: one DEALER to the broker, one zmq.Poller, a tick for periodic work.

Hello (with the jobs it still holds) → Welcome; heartbeats both ways (the broker's list
of our jobs acknowledges Done); Assign → job directory + runner + Started; Progress when
output or progress.md change; Done when the wrapper writes exit_code; Cancel and timeouts
stop the job's process group (SIGTERM, then SIGKILL after kill_grace). A broker silent for
`liveness` beats → reconnect with backoff 1 s doubling to 32 s.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from luzia import protocol
from luzia.agents import metrics, runners
from luzia.agents.jobdir import JobDir, prune
from luzia.config import Config, ensure_private_dir
from luzia.errors import ProtocolError

log = logging.getLogger(__name__)

BACKOFF_MAX = 32.0
PRUNE_EVERY = 60.0


@dataclass
class Running:
    dir: JobDir
    attempt: int
    timeout: float = 0.0
    started: float = field(default_factory=time.monotonic)
    signature: tuple = ()
    stop_reason: str = ""
    kill_at: float | None = None
    exit_code: int | None = None
    done_sent: float | None = None
    missed: int = 0                  # consecutive broker beats that did not list it
    grace: int = 2                   # broker beats to ignore after (re)adoption


class Worker:
    def __init__(self, cfg: Config, ctx: zmq.Context | None = None,
                 gpus: metrics.Gpus | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.agent.name
        self.root = Path(cfg.jobs_dir)
        ensure_private_dir(Path(cfg.home))
        ensure_private_dir(cfg.run_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.runner = runners.make_runner(cfg)
        self.gpus = gpus or metrics.Gpus()
        self.ctx = ctx or zmq.Context.instance()
        self.jobs: dict[str, Running] = {}
        self.interval = cfg.broker.heartbeat_interval
        self.liveness = cfg.broker.liveness
        self.sock: zmq.Socket | None = None
        self.backoff = 1.0
        self.reconnect_at = 0.0
        self.heard = time.monotonic()
        self.next_beat = 0.0
        self.next_prune = time.monotonic() + PRUNE_EVERY
        self.running = False
        self.welcomed = False
        self.cpu: float | None = None
        self.ping = self.ctx.socket(zmq.ROUTER)
        self.ping.setsockopt(zmq.LINGER, 0)
        self.ping.setsockopt(zmq.MAXMSGSIZE, 65536)
        self.ping.bind(f"ipc://{cfg.run_dir}/agent-{self.name}")
        self.poller = zmq.Poller()
        self.poller.register(self.ping, zmq.POLLIN)
        self._readopt()
        self.connect()

    # connection ------------------------------------------------------------------
    def connect(self) -> None:
        if self.sock is not None:
            self.poller.unregister(self.sock)
            self.sock.close(0)
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTING_ID, self.name.encode())
        sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE)
        sock.connect(self.cfg.endpoints.agents)
        self.sock = sock
        self.poller.register(sock, zmq.POLLIN)
        self.heard = time.monotonic()
        self.welcomed = False
        self.hello()

    def hello(self) -> None:
        held = [protocol.HeldJob(job_id=i, attempt=r.attempt, exit_code=r.exit_code)
                for i, r in sorted(self.jobs.items())]
        self.send(protocol.Hello(name=self.name, slots=self.cfg.agent.slots,
                                 capabilities=list(self.cfg.agent.capabilities),
                                 tags=list(self.cfg.agent.tags), held=held, pid=os.getpid()))
        log.info("hello to %s: slots=%d capabilities=%s held=%d", self.cfg.endpoints.agents,
                 self.cfg.agent.slots, ",".join(self.cfg.agent.capabilities), len(held))

    def send(self, msg: protocol.Message) -> None:
        try:
            self.sock.send_multipart(protocol.encode(msg), zmq.NOBLOCK)
        except zmq.Again:
            log.debug("broker queue full; %s not sent", type(msg).__name__)

    # loop ------------------------------------------------------------------------
    def run(self) -> None:
        self.running = True
        while self.running:
            self.turn()
        self.close()

    def stop(self) -> None:
        self.running = False

    def turn(self, timeout: float | None = None) -> None:
        if timeout is None:
            timeout = min(0.1, self.interval)
        ready = dict(self.poller.poll(timeout * 1000))
        if self.sock in ready:
            for _ in range(256):
                try:
                    frames = self.sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.heard = time.monotonic()
                self.backoff = 1.0
                try:
                    self.on_message(protocol.decode(frames, expect=protocol.TO_AGENT))
                except ProtocolError as exc:
                    log.warning("dropped bad frame from broker: %s", exc)
        if self.ping in ready:
            self.on_ping()
        self.tick(time.monotonic())

    def close(self) -> None:
        """Leave: the jobs keep running (tmux sessions, process groups) for the next agent."""
        for sock in (self.sock, self.ping):
            if sock is not None:
                sock.close(0)
        log.info("agent %s stopped; %d jobs left running", self.name,
                 sum(1 for r in self.jobs.values() if r.exit_code is None))

    def on_ping(self) -> None:
        try:
            frames = self.ping.recv_multipart(zmq.NOBLOCK)
            req = protocol.decode(frames[1:], expect=(protocol.Request,))
        except (zmq.Again, ProtocolError, IndexError):
            return
        running = sum(1 for r in self.jobs.values() if r.exit_code is None)
        self.ping.send_multipart([frames[0], *protocol.encode(protocol.Reply(
            req=req.req, result={"pid": os.getpid(), "name": self.name, "running": running}))])

    # messages from the broker -------------------------------------------------------
    def on_message(self, msg: protocol.Message) -> None:
        if isinstance(msg, protocol.Welcome):
            self.welcome(msg)
        elif isinstance(msg, protocol.Heartbeat):
            self.broker_beat(set(msg.running))
        elif isinstance(msg, protocol.Assign):
            self.assign(msg)
        elif isinstance(msg, protocol.Cancel):
            run = self.jobs.get(msg.job_id)
            if run is not None and run.exit_code is None:
                self.stop_job(run, msg.reason or "cancelled")
        elif isinstance(msg, protocol.LogRequest):
            self.send_log(msg)
        elif isinstance(msg, protocol.Disconnect):
            log.info("broker asked for a new hello: %s", msg.reason)
            self.hello()

    def welcome(self, msg: protocol.Welcome) -> None:
        self.interval, self.liveness, self.welcomed = msg.heartbeat_interval, msg.liveness, True
        for job_id in msg.drop:
            run = self.jobs.pop(job_id, None)
            if run is not None:
                log.info("job %s: broker does not know it; stopping and forgetting it", job_id)
                if run.exit_code is None:
                    runners.signal_job(run.dir, runners.KILL)
                run.dir.set_status(acked=True)
        for job_id in msg.adopt:
            run = self.jobs.get(job_id)
            if run is not None:
                run.grace = 2
                if run.exit_code is not None:
                    run.done_sent = time.monotonic()
        log.info("welcomed: heartbeat %.2fs, adopted %d, dropped %d", self.interval,
                 len(msg.adopt), len(msg.drop))

    def broker_beat(self, listed: set[str]) -> None:
        now = time.monotonic()
        for job_id, run in list(self.jobs.items()):
            if job_id in listed:
                run.missed = 0
                if run.done_sent is not None and now - run.done_sent > self.interval:
                    self.send_done(run)   # our Done was lost: say it again
                continue
            if run.done_sent is not None:          # acknowledged: forget it
                run.dir.set_status(acked=True)
                del self.jobs[job_id]
                continue
            if run.grace > 0:
                run.grace -= 1
                continue
            run.missed += 1
            if run.missed >= 2 and run.exit_code is None and not run.stop_reason:
                log.warning("job %s: broker no longer lists it; stopping the orphan", job_id)
                self.stop_job(run, "orphan")

    def assign(self, msg: protocol.Assign) -> None:
        job = msg.job
        current = self.jobs.get(job.id)
        if current is not None and current.exit_code is None:
            # the broker took our run for lost; it is still going: carry on under the new attempt
            log.info("job %s already running here; continuing it as attempt %d", job.id, msg.attempt)
            current.attempt = msg.attempt
            current.dir.set_status(attempt=msg.attempt)
            self.send(protocol.Started(job_id=job.id, attempt=msg.attempt, pid=current.dir.pid()))
            return
        busy = sum(1 for r in self.jobs.values() if r.exit_code is None)
        if busy >= self.cfg.agent.slots:
            log.warning("job %s assigned with all %d slots busy", job.id, self.cfg.agent.slots)
        jd = JobDir(self.root, job.id)
        run = Running(dir=jd, attempt=msg.attempt, timeout=job.timeout)
        self.jobs[job.id] = run
        try:
            jd.create(self.cfg, job, msg.attempt)
            session = self.runner.start(jd)
        except Exception as exc:  # a runner failure is the job's failure, not the agent's
            log.error("job %s could not start: %s", job.id, exc)
            run.exit_code = 127
            self.send(protocol.Started(job_id=job.id, attempt=msg.attempt))
            self.send_done(run, f"runner: {exc}"[:protocol.MAX_LINE])
            return
        self.send(protocol.Started(job_id=job.id, attempt=msg.attempt, session=session,
                                   pid=jd.pid()))
        log.info("job %s started (attempt %d) with the %s runner", job.id, msg.attempt,
                 self.runner.name)

    def send_log(self, msg: protocol.LogRequest) -> None:
        jd = JobDir(self.root, msg.job_id)
        try:
            data, size = jd.read_log(msg.offset, msg.limit)
            reply = protocol.LogChunk(req=msg.req, job_id=msg.job_id, offset=msg.offset,
                                      data=data, size=size)
        except OSError as exc:
            reply = protocol.LogChunk(req=msg.req, job_id=msg.job_id, offset=msg.offset,
                                      error=f"no log: {exc.strerror or exc}")
        self.send(reply)

    # jobs ---------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        if now - self.heard > self.liveness * self.interval and now >= self.reconnect_at:
            log.warning("broker silent for %.1fs; reconnecting (next try in %.0fs)",
                        now - self.heard, self.backoff)
            self.reconnect_at = now + self.backoff
            self.backoff = min(BACKOFF_MAX, self.backoff * 2)
            self.connect()
        for run in list(self.jobs.values()):
            self.watch(run, now)
        if now >= self.next_beat:
            self.next_beat = now + self.interval
            cpu, mem = metrics.load()
            # smoothed: one busy beat must not push the host over its ceiling
            self.cpu = cpu = cpu if self.cpu is None else 0.7 * self.cpu + 0.3 * cpu
            gpu = self.gpus.read()
            running = sorted(self.jobs)[:protocol.MAX_LIST]
            self.send(protocol.Heartbeat(cpu=cpu, memory=mem, gpu_memory=gpu.memory,
                                         gpu_util=gpu.util, gpu_free_gb=gpu.free_gb,
                                         running=running))
        if now >= self.next_prune:
            self.next_prune = now + PRUNE_EVERY
            prune(self.root, self.cfg.max_jobs, set(self.jobs))

    def watch(self, run: Running, now: float) -> None:
        if run.exit_code is not None:
            return
        sig = run.dir.signature()
        if sig != run.signature:
            run.signature = sig
            pct, message = run.dir.progress()
            self.send(protocol.Progress(job_id=run.dir.id, attempt=run.attempt, percent=pct,
                                        message=message,
                                        tail=run.dir.tail(self.cfg.agent.tail_lines)))
        code = run.dir.exit_code()
        if code is None and not self.runner.alive(run.dir):
            code = run.dir.exit_code()            # it may have ended between the two looks
            if code is None:
                run.stop_reason = run.stop_reason or "runner: process vanished"
                code = -1
        if code is not None:
            run.exit_code = code
            self.runner.reap(run.dir)
            run.dir.set_status(state="exited", exit_code=code, finished_at=time.time())
            self.send_done(run)
            log.info("job %s ended: exit %d%s", run.dir.id, code,
                     f" ({run.stop_reason})" if run.stop_reason else "")
            return
        if run.timeout and not run.stop_reason and now - run.started > run.timeout:
            self.stop_job(run, "timeout")
        if run.stop_reason and run.kill_at is None and runners.signal_job(run.dir, runners.TERM):
            run.kill_at = now + self.cfg.agent.kill_grace   # its pid was not known at the stop
        if run.kill_at is not None and now >= run.kill_at:
            runners.signal_job(run.dir, runners.KILL)
            run.kill_at = float("inf")

    def stop_job(self, run: Running, reason: str) -> None:
        run.stop_reason = reason
        run.kill_at = None            # until the TERM has reached it (the pid may be unknown yet)
        if runners.signal_job(run.dir, runners.TERM):
            run.kill_at = time.monotonic() + self.cfg.agent.kill_grace
        log.info("job %s: stopping (%s)", run.dir.id, reason)

    def send_done(self, run: Running, reason: str = "") -> None:
        run.done_sent = time.monotonic()
        reason = reason or run.stop_reason
        if reason == "orphan":
            reason = "cancelled"
        self.send(protocol.Done(job_id=run.dir.id, attempt=run.attempt,
                                exit_code=run.exit_code if run.exit_code is not None else -1,
                                reason=reason, tail=run.dir.tail(self.cfg.agent.tail_lines)))

    def _readopt(self) -> None:
        """After a restart: the job directories not yet acknowledged are ours again."""
        try:
            dirs = [d for d in self.root.iterdir() if d.is_dir()]
        except OSError:
            return
        for d in dirs:
            jd = JobDir(self.root, d.name)
            status = jd.status()
            if not status or status.get("acked"):
                continue
            run = Running(dir=jd, attempt=int(status.get("attempt", 1)))
            run.exit_code = jd.exit_code()
            if run.exit_code is None and not self.runner.alive(jd):
                run.exit_code = jd.exit_code()
                if run.exit_code is None:
                    run.exit_code, run.stop_reason = -1, "runner: process vanished"
            try:
                run.timeout = float(jd.meta()["job"].get("timeout", 0))
            except (OSError, ValueError, KeyError):
                pass
            self.jobs[d.name] = run
            log.info("job %s re-adopted (%s)", d.name,
                     "running" if run.exit_code is None else f"ended with {run.exit_code}")
