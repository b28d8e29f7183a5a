"""The agent's loop: one zmq.Poller over the broker session (session.py) and the health
socket, the broker's messages handed to the held jobs (held.py), and a tick for periodic
work (reconnect, watch every job, beat, prune finished job directories).

Stopping the agent leaves its jobs running; the next agent re-adopts them from the job
directories (readopt.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import zmq

from luzia import layout, pidlock, protocol, rpc
from luzia.agents import metrics, runners, worktrees
from luzia.agents.held import HeldJobs, Run
from luzia.agents.interactive import InteractiveRunner
from luzia.agents.jobdir import JobDir, prune
from luzia.agents.readopt import readopt
from luzia.agents.runners import Runner
from luzia.agents.session import BrokerSession
from luzia.config import Config, check_endpoint, ensure_private_dir
from luzia.errors import BadRequest
from luzia.service import SocketFiles

log = logging.getLogger(__name__)

PRUNE_EVERY = 60.0        # seconds between sweeps of finished job directories
BATCH = 256               # broker messages handled per loop turn


class Worker:
    """This host's agent. `run()` loops until `stop()`; tests drive `turn()`/`tick(now)`."""

    def __init__(self, cfg: Config, ctx: zmq.Context | None = None,
                 gpus: metrics.Gpus | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.agent.name
        self.root = Path(cfg.jobs_dir)
        ensure_private_dir(Path(cfg.home))
        ensure_private_dir(cfg.run_dir)
        ensure_private_dir(self.root)
        # one agent process per name here: a second would steal the health socket and the jobs
        self.lock = pidlock.hold(
            cfg.run_dir / layout.agent_lock(self.name),
            f"another agent named {self.name} (pid {{pid}}) is running on {cfg.home}; "
            "give this one another agent.name, or stop that one first", must_write=False)
        ping_endpoint = f"ipc://{cfg.run_dir}/agent-{self.name}"
        check_endpoint(ping_endpoint, "agent health socket")
        self.runner = make_runner(cfg)
        self.ctx = ctx or zmq.Context.instance()
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
        self.runner_fd: int | None = None     # the runner's news of ended jobs wakes the loop
        self.held = HeldJobs(cfg, self.runner, self.send)
        for run in readopt(cfg, self.runner):
            self.held.jobs[run.id] = run
        self.worktrees = worktrees.Worktrees(cfg)
        self.session = BrokerSession(cfg, self.ctx, self.poller, self.held,
                                     gpus or metrics.Gpus(), self.worktrees.beat)
        self.session.connect()

    @property
    def jobs(self) -> dict[str, Run]:
        """The runs this agent holds, by job id."""
        return self.held.jobs

    def send(self, msg: protocol.Message) -> None:
        self.session.send(msg)

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
            timeout = min(0.1, self.session.interval)
        polled = time.monotonic()
        self._watch_runner()
        ready = dict(self.poller.poll(int(timeout * 1000)))
        from_broker = self.session.sock in ready
        self.session.listened(time.monotonic() - polled, from_broker)
        if self.runner_fd is not None and self.runner_fd in ready:
            self.held.check(self.runner.ended(), time.monotonic())
        if from_broker:
            for msg in self.session.receive(BATCH):
                self.on_message(msg)
        if self.ping in ready:
            self.on_ping()
        self.tick(time.monotonic())

    def _watch_runner(self) -> None:
        """Poll the runner's socket too (the spawner's, once it runs: a new one after a restart)."""
        fd = self.runner.fileno()
        if fd == self.runner_fd:
            return
        if self.runner_fd is not None:
            self.poller.unregister(self.runner_fd)
        if fd is not None:
            self.poller.register(fd, zmq.POLLIN)
        self.runner_fd = fd

    def tick(self, now: float) -> None:
        """Reconnect a silent broker, watch every job, beat, prune now and then."""
        self.session.reconnect_if_silent(now)
        self.held.disk.probe(now)
        self.held.watch(now)
        self.worktrees.tick(now, set(self.held.jobs))
        self.files.check(now)
        self.session.beat_if_due(now)
        if now >= self.next_prune:
            self.next_prune = now + PRUNE_EVERY
            removed = prune(self.root, self.cfg.max_jobs, set(self.held.jobs))
            if removed:
                log.info("pruned %d finished job directories (keeping %d)", removed,
                         self.cfg.max_jobs)

    def close(self) -> None:
        """Leave: the jobs keep running (tmux sessions, process groups) for the next agent."""
        self.session.close()
        if self.runner_fd is not None:
            self.poller.unregister(self.runner_fd)
            self.runner_fd = None
        self.runner.close()
        if not self.ping.closed:
            self.poller.unregister(self.ping)
            self.ping.close(0)
        if self.lock >= 0:
            os.close(self.lock)
            self.lock = -1
        log.info("agent %s stopped; %d jobs left running", self.name, self.held.busy())

    # messages ----------------------------------------------------------------------
    def on_message(self, msg: protocol.Message) -> None:
        if isinstance(msg, protocol.Welcome):
            self.session.welcome(msg)
            self.held.welcome(msg.adopt, msg.drop)
        elif isinstance(msg, protocol.Heartbeat):
            self.held.broker_beat(set(msg.running), self.session.interval)
            if msg.discard:
                self.worktrees.discard(msg.discard)
        elif isinstance(msg, protocol.Assign):
            self.held.assign(msg, self.session.credits.slots)
        elif isinstance(msg, protocol.Cancel):
            self.held.cancel(msg.job_id)
        elif isinstance(msg, protocol.LogRequest):
            self.send(self.log_chunk(msg))
        elif isinstance(msg, protocol.Disconnect):
            self.session.disconnected(msg)

    def log_chunk(self, msg: protocol.LogRequest) -> protocol.LogChunk:
        """Part of a job's output.log, for `luzia logs` through the broker."""
        jd = JobDir(self.root, msg.job_id)
        try:
            data, size = jd.read_log(msg.offset, msg.limit)
            return protocol.LogChunk(req=msg.req, job_id=msg.job_id, offset=msg.offset,
                                     data=data, size=size)
        except OSError as exc:
            return protocol.LogChunk(req=msg.req, job_id=msg.job_id, offset=msg.offset,
                                     error=f"no log for job {msg.job_id} on {self.name}: "
                                           f"{exc.strerror or exc}")

    def on_ping(self) -> None:
        """The supervisor's health ping: answer `ping` with who we are."""
        for identity, req in rpc.requests(self.ping, BATCH, self.bad_pings):
            rpc.send(self.ping, identity, rpc.answer(req, self._health_op), log)

    def _health_op(self, op: str, args: dict) -> dict:
        if op != "ping":
            raise BadRequest(f"unknown operation {op!r}; this socket answers ping")
        return {"pid": os.getpid(), "name": self.name, "running": self.held.busy(),
                "refused": self.session.refused, "degraded": self.held.degraded()}


def make_runner(cfg: Config) -> Runner:
    """The runner agent.runner names (auto: tmux when it is installed)."""
    kind = cfg.agent.runner
    if kind == "auto":
        kind = "tmux" if shutil.which("tmux") else "subprocess"
    if kind == "tmux":
        return runners.TmuxRunner(cfg)
    if kind == "interactive":
        return InteractiveRunner(cfg)
    return runners.SubprocessRunner(cfg)
