"""The agent's loop: one DEALER to the broker, one zmq.Poller, a tick for periodic work.

Hello (with the jobs it still holds) → Welcome; heartbeats both ways (the broker's list
of our jobs acknowledges Done); Assign → job directory + runner + Started; Progress when
output or progress.md change; Done when the wrapper writes exit_code; Cancel and timeouts
stop the job's process group (SIGTERM, then SIGKILL after kill_grace). A broker silent for
`liveness` beats → reconnect with backoff 1 s doubling to 32 s. Stopping the agent leaves
its jobs running; the next agent re-adopts them from the job directories.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from luzia import keys, protocol, rpc
from luzia.agents import credits, metrics, runners, stall
from luzia.agents.jobdir import JobDir, prune
from luzia.config import Config, check_endpoint, ensure_private_dir
from luzia.errors import BadRequest, ProtocolError
from luzia.service import SocketFiles

log = logging.getLogger(__name__)

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 32.0
PRUNE_EVERY = 60.0        # seconds between sweeps of finished job directories
ADOPT_GRACE = 2           # broker beats that may omit a job just (re)adopted
ORPHAN_BEATS = 2          # consecutive broker beats without a job make it an orphan
BATCH = 256               # broker messages handled per loop turn


@dataclass
class Running:
    """A job this agent holds: running, or ended and waiting for the broker's acknowledgement."""

    dir: JobDir
    attempt: int
    timeout: float = 0.0
    started: float = field(default_factory=time.monotonic)
    signature: tuple = ()
    progress: tuple[float, str] = (-1.0, "")
    exit_code: int | None = None
    done_sent: float | None = None
    missed: int = 0               # consecutive broker beats that did not list it
    grace: int = 0                # broker beats to ignore (after a Welcome adopted it)
    forget: bool = False          # the broker dropped it: stop it, send no Done
    by_pid: bool = False          # re-adopted by its wrapper's pid (started by another runner)
    stall: stall.StallWatch | None = None   # None: stall detection is off for this job
    # stopping: TERM to the command's group, KILL after the grace, then the runner's kill
    stop_reason: str = ""
    stop_at: float = 0.0
    stop_phase: int = 0           # 0 TERM pending, 1 TERM sent, 2 KILL sent, 3 runner killed
    stop_deadline: float = 0.0

    @property
    def id(self) -> str:
        return self.dir.id


class Worker:
    """This host's agent. `run()` loops until `stop()`; tests drive `turn()`/`tick(now)`."""

    def __init__(self, cfg: Config, ctx: zmq.Context | None = None,
                 gpus: metrics.Gpus | None = None) -> None:
        self.cfg = cfg
        self.cpu: float | None = None
        self.name = cfg.agent.name
        self.root = Path(cfg.jobs_dir)
        ensure_private_dir(Path(cfg.home))
        ensure_private_dir(cfg.run_dir)
        ensure_private_dir(self.root)
        ping_endpoint = f"ipc://{cfg.run_dir}/agent-{self.name}"
        check_endpoint(ping_endpoint, "agent health socket")
        self.runner = runners.make_runner(cfg)
        self.gpus = gpus or metrics.Gpus()
        self.credits = credits.AdaptiveSlots(cfg)
        self.curve = keys.client_keys(cfg, cfg.endpoints.agents)
        self.ctx = ctx or zmq.Context.instance()
        self.jobs: dict[str, Running] = {}
        self.interval = cfg.broker.heartbeat_interval
        self.liveness = cfg.broker.liveness
        self.sock: zmq.Socket | None = None
        self.backoff = BACKOFF_FIRST
        self.reconnect_at = 0.0
        self.heard = time.monotonic()
        self.next_beat = 0.0
        self.next_prune = time.monotonic() + PRUNE_EVERY
        self.running = False
        self.ping = self.ctx.socket(zmq.ROUTER)
        self.ping.setsockopt(zmq.LINGER, 0)
        self.ping.setsockopt(zmq.MAXMSGSIZE, 65536)
        self.files = SocketFiles(log)      # the health socket, bound again if deleted
        self.files.bind(self.ping, ping_endpoint)
        self.bad_pings = rpc.BadFrames(log, "the health socket")
        self.poller = zmq.Poller()
        self.poller.register(self.ping, zmq.POLLIN)
        self._readopt()
        self.connect()

    # connection ------------------------------------------------------------------
    def connect(self) -> None:
        """A fresh DEALER (queued messages to a dead broker are dropped) and a Hello."""
        if self.sock is not None:
            self.poller.unregister(self.sock)
            self.sock.close(0)
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTING_ID, self.name.encode())
        sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE)
        if self.curve is not None:
            self.curve.apply(sock)
        sock.connect(self.cfg.endpoints.agents)
        self.sock = sock
        self.poller.register(sock, zmq.POLLIN)
        self.heard = time.monotonic()
        self.hello()

    def hello(self) -> None:
        held = [protocol.HeldJob(job_id=r.id, attempt=r.attempt, exit_code=r.exit_code)
                for r in sorted(self.jobs.values(), key=lambda r: r.id) if not r.forget]
        if len(held) > protocol.MAX_LIST:
            log.warning("holding %d jobs; only %d fit in a Hello", len(held), protocol.MAX_LIST)
            held = held[:protocol.MAX_LIST]
        self.send(protocol.Hello(name=self.name, slots=self.credits.slots,
                                 capabilities=list(self.cfg.agent.capabilities),
                                 tags=list(self.cfg.agent.tags), held=held, pid=os.getpid()))
        log.info("hello to %s as %s: slots=%d capabilities=%s held=%d", self.cfg.endpoints.agents,
                 self.name, self.credits.slots, ",".join(self.cfg.agent.capabilities), len(held))

    def send(self, msg: protocol.Message) -> None:
        try:
            self.sock.send_multipart(protocol.encode(msg), zmq.NOBLOCK)
        except zmq.Again:  # the broker is gone and the queue is full; heartbeats will retry
            log.debug("broker queue full; %s not sent", type(msg).__name__)

    # loop ------------------------------------------------------------------------
    def run(self) -> None:
        self.running = True
        log.info("agent %s running with the %s runner, %d slots", self.name, self.runner.name,
                 self.cfg.agent.slots)
        try:
            while self.running:
                self.turn()
        finally:
            self.close()

    def stop(self) -> None:
        """Ask the loop to end (safe from a signal handler); the jobs keep running."""
        self.running = False

    def turn(self, timeout: float | None = None) -> None:
        """One poll (at most `timeout` seconds), the messages that arrived, then a tick."""
        if timeout is None:
            timeout = min(0.1, self.interval)
        ready = dict(self.poller.poll(timeout * 1000))
        if self.sock in ready:
            for _ in range(BATCH):
                try:
                    frames = self.sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.heard = time.monotonic()
                self.backoff = BACKOFF_FIRST
                try:
                    msg = protocol.decode(frames, expect=protocol.TO_AGENT)
                except ProtocolError as exc:
                    log.warning("dropped bad frame from broker: %s", exc)
                    continue
                self.on_message(msg)
        if self.ping in ready:
            self.on_ping()
        self.tick(time.monotonic())

    def close(self) -> None:
        """Leave: the jobs keep running (tmux sessions, process groups) for the next agent."""
        for sock in (self.sock, self.ping):
            if sock is not None and not sock.closed:
                self.poller.unregister(sock)
                sock.close(0)
        log.info("agent %s stopped; %d jobs left running", self.name, self.busy())

    def busy(self) -> int:
        return sum(1 for r in self.jobs.values() if r.exit_code is None)

    def on_ping(self) -> None:
        """The supervisor's health ping: answer `ping` with who we are."""
        for identity, req in rpc.requests(self.ping, BATCH, self.bad_pings):
            rpc.send(self.ping, identity, rpc.answer(req, self._health_op), log)

    def _health_op(self, op: str, args: dict) -> dict:
        if op != "ping":
            raise BadRequest(f"unknown operation {op!r}; this socket answers ping")
        return {"pid": os.getpid(), "name": self.name, "running": self.busy()}

    # messages from the broker -------------------------------------------------------
    def on_message(self, msg: protocol.Message) -> None:
        if isinstance(msg, protocol.Welcome):
            self.welcome(msg)
        elif isinstance(msg, protocol.Heartbeat):
            self.broker_beat(set(msg.running))
        elif isinstance(msg, protocol.Assign):
            self.assign(msg)
        elif isinstance(msg, protocol.Cancel):
            self.cancel(msg)
        elif isinstance(msg, protocol.LogRequest):
            self.send_log(msg)
        elif isinstance(msg, protocol.Disconnect):
            log.info("broker asked for a new hello: %s", msg.reason)
            self.hello()

    def welcome(self, msg: protocol.Welcome) -> None:
        self.interval, self.liveness = msg.heartbeat_interval, msg.liveness
        self.next_beat = 0.0
        for job_id in msg.drop:
            run = self.jobs.get(job_id)
            if run is None:
                continue
            run.forget = True
            if run.exit_code is None:
                log.info("job %s: the broker dropped it; stopping it", job_id)
                self.stop_job(run, "dropped by the broker")
            else:
                self.forget(run)
        for job_id in msg.adopt:
            run = self.jobs.get(job_id)
            if run is not None:
                # the broker's beats already in flight were made before it adopted the job
                run.grace, run.missed = ADOPT_GRACE, 0
                run.signature = ()     # a restarted broker learns its progress and stall flag
                if run.exit_code is not None:
                    run.done_sent = time.monotonic()   # the held exit code was taken as its Done
        log.info("welcomed: heartbeat %.2fs, adopted %d, dropped %d", self.interval,
                 len(msg.adopt), len(msg.drop))

    def broker_beat(self, listed: set[str]) -> None:
        """The broker's view of our jobs: acknowledges Done, reveals lost Dones and orphans."""
        now = time.monotonic()
        for run in list(self.jobs.values()):
            if run.forget:
                continue
            if run.id in listed:
                run.missed = 0
                if run.done_sent is not None and now - run.done_sent > self.interval:
                    log.info("job %s: broker still lists it; sending Done again", run.id)
                    self.send_done(run)
                continue
            if run.done_sent is not None:
                log.debug("job %s: Done acknowledged", run.id)
                self.forget(run)
                continue
            if run.grace > 0:
                run.grace -= 1
                continue
            run.missed += 1
            if run.missed >= ORPHAN_BEATS and run.exit_code is None and not run.stop_reason:
                log.warning("job %s: not listed in %d broker heartbeats; stopping the orphan",
                            run.id, run.missed)
                self.stop_job(run, "orphan")

    def assign(self, msg: protocol.Assign) -> None:
        job = msg.job
        current = self.jobs.get(job.id)
        if current is not None and current.exit_code is None and not current.forget:
            # the broker took our run for lost; it is still going: carry on under the new attempt
            log.info("job %s already running here; continuing it as attempt %d", job.id,
                     msg.attempt)
            current.attempt, current.missed = msg.attempt, 0
            current.dir.set_status(attempt=msg.attempt)
            self.send(protocol.Started(job_id=job.id, attempt=msg.attempt,
                                       session=self._session(current), pid=current.dir.pid()))
            return
        if current is not None and not current.forget:
            # it already ran here and the broker gave up waiting before our Started or Done
            # reached it (a slow agent): its end is this attempt's end, not a reason to rerun
            log.info("job %s already ran here (exit %d); reporting it as attempt %d", job.id,
                     current.exit_code, msg.attempt)
            current.attempt = msg.attempt
            current.dir.set_status(attempt=msg.attempt)
            self.send(protocol.Started(job_id=job.id, attempt=msg.attempt,
                                       session=self._session(current), pid=current.dir.pid()))
            self.send_done(current)
            return
        if current is not None and current.exit_code is None:
            # a dropped run of the same job: it must not write into the new attempt's files
            log.warning("job %s assigned again while its dropped run is stopping; killing it",
                        job.id)
            runners.signal_job(current.dir, runners.KILL)
            self.runner.kill(current.dir)
        if self.busy() >= self.credits.slots:
            log.warning("job %s assigned with all %d slots busy; running it anyway", job.id,
                        self.credits.slots)
        jd = JobDir(self.root, job.id)
        run = Running(dir=jd, attempt=msg.attempt, timeout=job.timeout,
                      stall=stall.watch_for(self.cfg, job.project))
        self.jobs[job.id] = run
        try:
            jd.create(self.cfg, job, msg.attempt)
            session = self.runner.start(jd)
        except Exception as exc:  # a runner failure is the job's failure, not the agent's
            log.error("job %s could not start: %s", job.id, exc)
            run.exit_code = 127
            self.send(protocol.Started(job_id=job.id, attempt=msg.attempt))
            self._ended(run, f"runner: {exc}"[:protocol.MAX_LINE])
            return
        self.send(protocol.Started(job_id=job.id, attempt=msg.attempt, session=session,
                                   pid=jd.pid()))
        log.info("job %s started (attempt %d) with the %s runner%s", job.id, msg.attempt,
                 self.runner.name, f" in session {session}" if session else "")

    def cancel(self, msg: protocol.Cancel) -> None:
        run = self.jobs.get(msg.job_id)
        if run is None:
            log.info("job %s: cancel for a job this agent does not hold", msg.job_id)
        elif run.exit_code is None and not run.stop_reason:
            self.stop_job(run, "cancelled")

    def send_log(self, msg: protocol.LogRequest) -> None:
        jd = JobDir(self.root, msg.job_id)
        try:
            data, size = jd.read_log(msg.offset, msg.limit)
            reply = protocol.LogChunk(req=msg.req, job_id=msg.job_id, offset=msg.offset,
                                      data=data, size=size)
        except OSError as exc:
            reply = protocol.LogChunk(req=msg.req, job_id=msg.job_id, offset=msg.offset,
                                      error=f"no log for job {msg.job_id} on {self.name}: "
                                            f"{exc.strerror or exc}")
        self.send(reply)

    # periodic ---------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Reconnect a silent broker, watch every job, beat, prune now and then."""
        if now - self.heard > self.liveness * self.interval and now >= self.reconnect_at:
            log.warning("broker silent for %.1fs; reconnecting (next try in %.0fs at the earliest)%s",
                        now - self.heard, self.backoff,
                        keys.silence_hint(self.cfg, self.cfg.endpoints.agents))
            self.reconnect_at = now + self.backoff
            self.backoff = min(BACKOFF_MAX, self.backoff * 2)
            self.connect()
        for run in list(self.jobs.values()):
            self.watch(run, now)
        self.files.check(now)
        if now >= self.next_beat:
            self.next_beat = now + self.interval
            self.beat()
        if now >= self.next_prune:
            self.next_prune = now + PRUNE_EVERY
            removed = prune(self.root, self.cfg.max_jobs, set(self.jobs))
            if removed:
                log.info("pruned %d finished job directories (keeping %d)", removed,
                         self.cfg.max_jobs)

    def beat(self) -> None:
        cpu, mem = metrics.load()
        # smoothed: one busy beat must not push the host over its ceiling
        self.cpu = cpu = cpu if self.cpu is None else 0.7 * self.cpu + 0.3 * cpu
        gpu = self.gpus.read()
        running = sorted(r.id for r in self.jobs.values() if not r.forget)[:protocol.MAX_LIST]
        self.send(protocol.Heartbeat(cpu=cpu, memory=mem, gpu_memory=gpu.memory,
                                     gpu_util=gpu.util, gpu_free_gb=gpu.free_gb, running=running,
                                     slots=self.credits.update(gpu)))

    def watch(self, run: Running, now: float) -> None:
        """Progress, the end, the timeout and the stop sequence of one job."""
        if run.exit_code is not None:
            return
        if not run.forget:
            self._progress(run)
        code = run.dir.exit_code()
        if code is None and not self._alive(run):
            code = run.dir.exit_code()            # it may have ended between the two looks
            if code is None:
                run.stop_reason = run.stop_reason or "runner: process vanished"
                code = -1
        if code is not None:
            run.exit_code = code
            self.runner.reap(run.dir)
            if run.forget:
                log.info("job %s: dropped run ended (exit %d); forgotten", run.id, code)
                self.forget(run)
            else:
                self._ended(run)
            return
        if run.stall is not None and not run.stop_reason and now >= run.stall.next_check:
            self._check_stall(run, now)
        if run.timeout and not run.stop_reason and now - run.started > run.timeout:
            log.info("job %s: timed out after %gs", run.id, run.timeout)
            self.stop_job(run, "timeout")
        if run.stop_reason:
            self._stopping(run, now)

    def _progress(self, run: Running) -> None:
        sig = run.dir.signature()
        if sig == run.signature:
            return
        run.signature = sig
        pct, message = run.dir.progress()
        if (pct, message) != run.progress:
            run.progress = (pct, message)
            run.dir.set_status(sync=False, progress=pct, message=message)
        if run.stall is not None and run.stall.stalled:    # the flag clears in this same report
            self._check_stall(run, time.monotonic(), report=False)
        self._send_progress(run)

    def _send_progress(self, run: Running) -> None:
        pct, message = run.progress
        watch, now = run.stall, time.monotonic()
        self.send(protocol.Progress(job_id=run.id, attempt=run.attempt, percent=pct,
                                    message=message, tail=run.dir.tail(self._tail_lines()),
                                    stalled=bool(watch and watch.stalled),
                                    stalled_for=watch.idle(now) if watch and watch.stalled else 0.0))

    def _check_stall(self, run: Running, now: float, report: bool = True) -> None:
        """Flag (and with kill_on_stall stop) a job whose visible output stopped changing."""
        watch = run.stall
        change = watch.check(stall.fingerprint(self.runner, run.dir), now)
        if change == "stalled":
            log.warning("job %s: no output change for %.0fs; flagged stalled%s", run.id,
                        watch.idle(now), ", stopping it" if watch.kill else "")
            stall.snapshot(self.runner, run.dir, watch.idle(now))
            if watch.kill:
                self.stop_job(run, "stalled")
        elif change == "resumed":
            log.info("job %s: output again; no longer stalled", run.id)
        if change and report and not run.forget:
            self._send_progress(run)

    def stop_job(self, run: Running, reason: str) -> None:
        """Begin stopping: SIGTERM now (or as soon as the command's pid is known)."""
        run.stop_reason, run.stop_at, run.stop_phase = reason, time.monotonic(), 0
        log.info("job %s: stopping (%s)", run.id, reason)
        self._stopping(run, run.stop_at)

    def _stopping(self, run: Running, now: float) -> None:
        grace = self.cfg.agent.kill_grace
        if run.stop_phase == 0:
            if runners.signal_job(run.dir, runners.TERM):
                run.stop_phase, run.stop_deadline = 1, now + grace
            elif now - run.stop_at > grace:   # the command's pid never showed up
                self._runner_kill(run)
        elif run.stop_phase == 1 and now >= run.stop_deadline:
            log.warning("job %s: still running %gs after SIGTERM; SIGKILL", run.id, grace)
            runners.signal_job(run.dir, runners.KILL)
            run.stop_phase, run.stop_deadline = 2, now + grace
        elif run.stop_phase == 2 and now >= run.stop_deadline:
            self._runner_kill(run)

    def _runner_kill(self, run: Running) -> None:
        log.warning("job %s: its wrapper did not end; removing it with the %s runner", run.id,
                    self.runner.name)
        run.stop_phase = 3
        self.runner.kill(run.dir)

    def _ended(self, run: Running, reason: str = "") -> None:
        reason = reason or run.stop_reason
        if reason == "orphan":   # the broker forgot it: for the broker it is a kill
            reason = "cancelled"
        run.stop_reason = reason
        run.dir.set_status(state="exited", exit_code=run.exit_code, reason=reason,
                           finished_at=time.time())
        self.send_done(run)
        log.info("job %s ended: exit %d%s", run.id, run.exit_code,
                 f" ({reason})" if reason else "")

    def send_done(self, run: Running) -> None:
        run.done_sent = time.monotonic()
        self.send(protocol.Done(job_id=run.id, attempt=run.attempt,
                                exit_code=run.exit_code if run.exit_code is not None else -1,
                                reason=run.stop_reason[:protocol.MAX_LINE],
                                tail=run.dir.tail(self._tail_lines())))

    def forget(self, run: Running) -> None:
        """The broker has this job's end (or never wanted it): no longer ours to report."""
        self.jobs.pop(run.id, None)
        try:
            run.dir.set_status(acked=True)
        except OSError as exc:
            log.warning("job %s: cannot mark it acknowledged: %s", run.id, exc)

    def _alive(self, run: Running) -> bool:
        return runners.wrapper_alive(run.dir) if run.by_pid else self.runner.alive(run.dir)

    def _tail_lines(self) -> int:
        return max(0, min(self.cfg.agent.tail_lines, protocol.MAX_TAIL_LINES))

    def _session(self, run: Running) -> str:
        return str(run.dir.status().get("session") or "")   # the runner recorded it

    # restart ----------------------------------------------------------------------
    def _readopt(self) -> None:
        """After a restart: the job directories not yet acknowledged are ours again."""
        try:
            dirs = sorted(d for d in self.root.iterdir() if d.is_dir())
        except OSError as exc:
            log.warning("cannot scan %s for jobs to re-adopt: %s", self.root, exc)
            return
        for d in dirs:
            jd = JobDir(self.root, d.name)
            status = jd.status()
            if not status or status.get("acked"):
                continue
            try:
                attempt = max(1, int(status.get("attempt", 1)))
            except (TypeError, ValueError):
                attempt = 1
            run = Running(dir=jd, attempt=attempt, grace=ADOPT_GRACE)
            run.exit_code = jd.exit_code()
            if run.exit_code is not None:
                run.stop_reason = str(status.get("reason", ""))
            elif not self.runner.alive(jd):
                # its session is gone; its wrapper may still run (started by the other runner)
                run.by_pid = runners.wrapper_alive(jd) or runners.rediscover_wrapper(jd)
                run.exit_code = None if run.by_pid else jd.exit_code()
                if run.exit_code is None and not run.by_pid and not jd.pid():
                    # the agent died before the command started: not held, so the broker
                    # requeues it (a failure here would fail a job that never ran)
                    log.info("job %s never started before the last agent stopped; leaving it "
                             "to the broker", run.id)
                    jd.set_status(state="never started", acked=True)
                    continue
                if run.exit_code is None and not run.by_pid:
                    run.exit_code, run.stop_reason = -1, "runner: process vanished"
            try:
                job = jd.meta()["job"]
                run.timeout = float(job.get("timeout", 0))
                run.stall = stall.watch_for(self.cfg, str(job.get("project", "")))
                started_at = float(status.get("started_at") or time.time())
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                started_at = time.time()
            # the timeout counts from the job's start, not from this agent's
            run.started = time.monotonic() - max(0.0, time.time() - started_at)
            if run.exit_code is not None and status.get("state") != "exited":
                jd.set_status(state="exited", exit_code=run.exit_code, reason=run.stop_reason,
                              finished_at=time.time())
            self.jobs[run.id] = run
            log.info("job %s re-adopted (attempt %d, %s)", run.id, attempt,
                     "running" if run.exit_code is None else f"ended with {run.exit_code}")
