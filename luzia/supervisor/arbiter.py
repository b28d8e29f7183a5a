"""The arbiter: starts this host's children, restarts them by policy, pings them, reads their
output, answers the control socket (luzia/supervisor/control.py), talks to systemd, and
stops everything on SIGTERM/SIGINT. One zmq.Poller loop (`turn`); the periodic work is
`tick(now)`, which tests may call directly.

Decisions:
- WATCHDOG=1 says the supervisor's loop is alive, not that every child is: restarting the
  whole unit would not mend a flapping child, and a FATAL child must wait for its cool-down
  (supervisord's "never retried" is the complaint we fix), not be cut short by systemd.
- READY=1 goes out when every wanted child is running, or at the latest after
  start_grace + ping_timeout, so a broken child does not fail the unit's start as well;
  STATUS= says which child is not up.
- During a shutdown nothing is restarted: with Ctrl-C the children get SIGINT at the same
  moment as we do, and their deaths are not failures.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

import zmq

from luzia import keys, layout, protocol, rpc
from luzia.client import Control
from luzia.config import Config, ensure_private_dir
from luzia.errors import BadRequest, LuziaError, ProtocolError, StateDirError
from luzia.service import SocketFiles
from luzia.supervisor.control import Controller
from luzia.supervisor.logs import ChildOutput, RotatingLog
from luzia.supervisor.notify import Notifier
from luzia.supervisor.process import Child, Program, describe_exit
from luzia.supervisor.states import ProcState

log = logging.getLogger(__name__)

MAX_CONTROL_MSG = 65536
CONTROL_BATCH = 64           # control requests handled per loop turn
STARTING_PING = 0.5          # seconds between pings while a child starts (it is up sooner)
FINAL_GRACE = 5.0            # after SIGKILL at shutdown, give up waiting for a child after this
# the children must not talk to systemd in our name
NOT_FOR_CHILDREN = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")


def default_programs(cfg: Config) -> list[Program]:
    """The broker and/or the agent (cfg.supervisor), the dashboard (cfg.web.enabled) and the
    notifier beside a broker when [notify] has rules, started by module (never imported);
    then the operator's own [supervisor.programs], by name."""
    out = []
    if cfg.supervisor.broker:
        out.append(Program("broker", [sys.executable, "-m", "luzia.broker"], cfg.endpoints.control))
    if cfg.supervisor.agent:
        out.append(Program("agent", [sys.executable, "-m", "luzia.agents"],
                           f"ipc://{cfg.run_dir}/agent-{cfg.agent.name}"))
    if cfg.web.enabled:     # the dashboard (docs/WEB.md), a client of the broker like the CLI
        out.append(Program("web", [sys.executable, "-m", "luzia.web"],
                           f"ipc://{cfg.run_dir}/{layout.WEB_HEALTH}"))
    if cfg.supervisor.broker and cfg.notify.rules:     # beside the broker (docs/NOTIFY.md)
        out.append(Program("notify", [sys.executable, "-m", "luzia.notify"], cfg.endpoints.notify))
    out += [Program(name, list(argv)) for name, argv in sorted(cfg.supervisor.programs.items())]
    return out


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NOT_FOR_CHILDREN}
    env.setdefault("PYTHONUNBUFFERED", "1")   # their output reaches the log as it happens
    return env


class Arbiter:
    """Keeps a table of Programs running on this host."""

    def __init__(self, cfg: Config, programs: list[Program] | None = None, echo: bool = False,
                 notifier: Notifier | None = None, stream: TextIO | None = None) -> None:
        self.cfg = cfg
        self.scfg = cfg.supervisor
        for path in (Path(cfg.home), cfg.run_dir, cfg.log_dir):
            ensure_private_dir(path)
        self.ctx = zmq.Context()
        self.poller = zmq.Poller()
        self.files = SocketFiles(log)     # the control socket, bound again if deleted
        self.control = self._bind_control(cfg.endpoints.supervisor)   # refuses a second supervisor
        self.bad_control = rpc.BadFrames(log, "the control socket")
        programs = default_programs(cfg) if programs is None else programs
        self.children: dict[str, Child] = {}
        for p in programs:
            try:
                file = RotatingLog(cfg.log_dir / f"{p.name}.log", self.scfg.log_max_bytes,
                                   self.scfg.log_backups)
            except OSError as exc:
                self.control.close(0)
                self.ctx.term()
                raise StateDirError(f"cannot write {cfg.log_dir / p.name}.log: "
                                    f"{exc.strerror or exc}") from None
            self.children[p.name] = Child(p, self.scfg, ChildOutput(p.name, file, echo, stream))
        self.env = child_env()
        self.notifier = notifier if notifier is not None else Notifier()
        self.controller = Controller(self)
        self.pings: dict[str, zmq.Socket] = {}
        self.watched: dict[int, Child] = {}       # output pipe fd -> child
        self.req = itertools.count(1)
        self.began = 0.0
        self.next_ping = 0.0
        self.next_watchdog = 0.0
        self.ready_sent = False
        self.last_status = ""
        self.stop_requests = 0                    # bumped by the signal handler, read by tick
        self.stops_seen = 0
        self.shutting_down = False
        self.shutdown_deadline = 0.0
        self.done = False
        self.wakeup: tuple[int, int] | None = None

    # setup -----------------------------------------------------------------------------
    def _bind_control(self, endpoint: str) -> zmq.Socket:
        if endpoint.startswith("ipc://") and os.path.exists(endpoint[6:]):
            other = self._ask_other(endpoint)
            if other is not None:
                self.ctx.destroy(0)
                raise LuziaError(f"another supervisor (pid {other}) is already running at {endpoint}")
        sock = self.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_CONTROL_MSG)
        try:
            self.files.bind(sock, endpoint, what="supervisor")
        except LuziaError:
            self.ctx.destroy(0)
            raise
        self.poller.register(sock, zmq.POLLIN)
        return sock

    def _ask_other(self, endpoint: str) -> int | None:
        """The pid of a supervisor already answering at `endpoint` (binding an ipc path would
        silently steal it, and two supervisors would run two brokers)."""
        try:
            with Control(self.cfg, timeout=0.5, endpoint=endpoint, what="supervisor") as other:
                answer = other.call("ping")
        except (LuziaError, zmq.ZMQError):
            return None          # nothing there, or not a supervisor: the path is ours
        pid = answer.get("pid") if isinstance(answer, dict) else None
        return pid if isinstance(pid, int) else 0

    def handle_signals(self) -> None:
        """SIGTERM/SIGINT ask for a graceful stop; a second one kills. The handler only
        counts (the loop acts on it); the wakeup pipe interrupts the poll at once."""
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        self.poller.register(r, zmq.POLLIN)
        self.wakeup = (r, w)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.request_stop())

    def request_stop(self) -> None:
        """Safe from a signal handler: the next tick starts (or, the second time, forces)
        the shutdown."""
        self.stop_requests += 1

    # loop ------------------------------------------------------------------------------
    def start(self) -> None:
        now = time.monotonic()
        self.began = now
        for child in self.children.values():
            self._start(child, now)

    def run(self) -> None:
        self.start()
        while not self.done:
            self.turn()
        self.close()

    def turn(self, timeout: float = 0.2) -> None:
        """One loop turn: wait for input (at most `timeout` s), handle it, then tick."""
        ready = dict(self.poller.poll(int(timeout * 1000)))
        if self.control in ready:
            self._on_control()
        for name, sock in list(self.pings.items()):
            if sock in ready:
                self._on_pong(name, sock)
        for fd, child in list(self.watched.items()):
            if fd in ready and not child.pump_output():
                self._unwatch(child)          # at its end: stop polling it, reap below
        if self.wakeup is not None and self.wakeup[0] in ready:
            try:
                os.read(self.wakeup[0], 512)
            except BlockingIOError:
                pass
        self.tick(time.monotonic())

    def tick(self, now: float) -> None:
        """Periodic work: shutdown requests, reaping, restarts, health, systemd."""
        if self.stop_requests > self.stops_seen:
            self.stops_seen = self.stop_requests
            self.shutdown(now)
        for child in self.children.values():
            if child.proc is not None and child.proc.poll() is not None:
                self._unwatch(child)
                self._exited(child, now, child.reap())
            elif child.kill_at is not None and now >= child.kill_at:
                log.warning("%s (pid %d) did not stop within %gs: SIGKILL", child.name, child.pid,
                            self.scfg.stop_timeout)
                child.kill()
                child.kill_at = None
        if self.shutting_down:
            self._watchdog(now)             # systemd's watchdog still runs while we stop
            alive = [c for c in self.children.values() if c.proc is not None]
            if not alive or now >= self.shutdown_deadline + FINAL_GRACE:
                for c in alive:
                    log.error("%s (pid %d) is still there after SIGKILL; leaving it", c.name, c.pid)
                self.done = True
            return
        for child in self.children.values():
            self._policy(child, now)
        self.files.check(now)
        if now >= self.next_ping:
            self.next_ping = now + self.scfg.ping_interval
            for child in self.children.values():
                if child.state is ProcState.RUNNING and child.program.ping:
                    self._ping(child)
        self._notify(now)

    def _policy(self, child: Child, now: float) -> None:
        """Restart when the delay is over; promote a starting child; kill a hung one."""
        if child.state in (ProcState.BACKOFF, ProcState.FATAL):
            if child.wanted and now >= child.restart_at:
                self._start(child, now)
        elif child.state is ProcState.STARTING:
            if not child.program.ping:
                # nothing to ask: up once it has stayed up a moment
                if now - child.started_at >= min(1.0, self.scfg.start_grace):
                    child.move(ProcState.RUNNING)
                    log.info("%s is up (pid %d)", child.name, child.pid)
            elif child.hung:
                pass                    # SIGKILLed: waiting to reap it
            elif now - child.started_at > self.scfg.start_grace + self.scfg.ping_timeout:
                self._hung(child, "never answered its health ping")
            elif now - child.last_ping >= STARTING_PING:
                self._ping(child)
        elif child.state is ProcState.RUNNING and child.program.ping and not child.hung:
            silent = now - child.last_pong
            if silent > self.scfg.ping_timeout:
                self._hung(child, f"no answer to health pings for {silent:.1f}s")

    def _start(self, child: Child, now: float) -> None:
        try:
            child.spawn(now, self.env)
        except (OSError, subprocess.SubprocessError) as exc:
            child.proc = None
            child.restart_at = now + self.scfg.backoff_max
            child.move(ProcState.BACKOFF, f"cannot start: {exc}; retry in {self.scfg.backoff_max:g}s")
            log.error("%s %s", child.name, child.message)
            return
        fd = child.fd
        if fd is not None:
            self.watched[fd] = child
            self.poller.register(fd, zmq.POLLIN)
        if child.program.ping:
            self._ping(child, fresh=True)

    def _unwatch(self, child: Child) -> None:
        for fd, c in list(self.watched.items()):
            if c is child:
                self.poller.unregister(fd)
                del self.watched[fd]

    def _exited(self, child: Child, now: float, code: int | None) -> None:
        code = -1 if code is None else code
        self._drop_ping(child.name)
        child.kill_at = None
        if self.shutting_down:
            child.move(ProcState.EXITED, describe_exit(code))
            log.info("%s %s", child.name, child.message)
        elif child.state is ProcState.STOPPING:
            child.move(ProcState.STOPPED, f"stopped by the operator ({describe_exit(code)})")
            log.info("%s %s", child.name, child.message)
            if child.wanted:                  # a restart, or a start while it was stopping
                self._start(child, now)
        else:
            child.died(now, code)

    def _hung(self, child: Child, why: str) -> None:
        log.error("%s (pid %d) is hung (%s): SIGKILL and restart", child.name, child.pid, why)
        child.message = f"hung: {why}"
        child.hung = True
        child.kill()

    # health pings ----------------------------------------------------------------------
    def _ping(self, child: Child, fresh: bool = False) -> None:
        if fresh:
            self._drop_ping(child.name)
        sock = self.pings.get(child.name)
        if sock is None:
            sock = self.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 4)
            sock.setsockopt(zmq.MAXMSGSIZE, MAX_CONTROL_MSG)
            try:
                keys.secure_client(sock, self.cfg, child.program.ping)   # the broker's control
            except keys.MissingKeys:
                pass     # the broker refuses to start without them, and says so in its log
            sock.connect(child.program.ping)
            self.pings[child.name] = sock
            self.poller.register(sock, zmq.POLLIN)
        child.last_ping = time.monotonic()
        try:
            # our protocol: a broker with broker.min_protocol above 1 answers no other ping
            sock.send_multipart(protocol.encode(protocol.Request(
                req=next(self.req), op="ping", protocol=protocol.PROTOCOL)), zmq.NOBLOCK)
        except zmq.Again:
            pass  # a few pings already queued: the answer to one of them is all we need

    def _on_pong(self, name: str, sock: zmq.Socket) -> None:
        child = self.children[name]
        for _ in range(16):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                reply = protocol.decode(frames, expect=(protocol.Reply,))
            except ProtocolError as exc:
                log.warning("%s: bad health answer dropped: %s", name, exc)
                continue
            if not isinstance(reply, protocol.Reply) or not reply.ok:
                continue
            child.last_pong = time.monotonic()
            if child.state is ProcState.STARTING:
                child.move(ProcState.RUNNING)
                log.info("%s is up (pid %d)", name, child.pid)

    def _drop_ping(self, name: str) -> None:
        sock = self.pings.pop(name, None)
        if sock is not None:
            self.poller.unregister(sock)
            sock.close(0)

    # systemd ---------------------------------------------------------------------------
    def summary(self) -> str:
        """One line for systemd's STATUS= and the log: 'broker running, agent backoff'."""
        return ", ".join(f"{c.name} {c.state.value}" for c in self.children.values()) or "no programs"

    def _notify(self, now: float) -> None:
        if not self.notifier.enabled:
            return
        status = self.summary()
        if not self.ready_sent:
            up = all(c.state is ProcState.RUNNING or not c.wanted for c in self.children.values())
            if up or now >= self.began + self.scfg.start_grace + self.scfg.ping_timeout:
                self.ready_sent = True
                self.notifier.ready(status)
                self.last_status = status
        if not self._watchdog(now) and status != self.last_status:
            self.notifier.status(status)
            self.last_status = status

    def _watchdog(self, now: float) -> bool:
        """WATCHDOG=1 (with STATUS=) when it is due; True if it was sent."""
        if not self.notifier.enabled or now < self.next_watchdog:
            return False
        self.next_watchdog = now + self.notifier.watchdog_interval
        self.last_status = self.summary()
        self.notifier.watchdog_ping(self.last_status)
        return True

    # operator --------------------------------------------------------------------------
    def want(self, child: Child, restart: bool) -> None:
        """An operator's start (restart=False) or restart of `child`."""
        if self.shutting_down:
            raise BadRequest("the supervisor is shutting down")
        child.wanted = True
        child.forgive()
        now = time.monotonic()
        if child.state in (ProcState.STARTING, ProcState.RUNNING):
            if restart:
                log.info("%s: restart asked by the operator", child.name)
                child.move(ProcState.STOPPING, "restarting (operator)")
                child.terminate(now, self.scfg.stop_timeout)
        elif child.state is not ProcState.STOPPING:   # STOPPING: started again when it ends
            log.info("%s: start asked by the operator", child.name)
            if child.state in (ProcState.BACKOFF, ProcState.FATAL):
                child.move(ProcState.STOPPED, "starting (operator)")
            self._start(child, now)

    def unwant(self, child: Child) -> None:
        """An operator's stop: stop `child` and keep it stopped."""
        if self.shutting_down:
            raise BadRequest("the supervisor is shutting down")
        child.wanted = False
        log.info("%s: stop asked by the operator", child.name)
        if child.state in (ProcState.STARTING, ProcState.RUNNING):
            child.move(ProcState.STOPPING, "stopping (operator)")
            child.terminate(time.monotonic(), self.scfg.stop_timeout)
        elif child.state in (ProcState.BACKOFF, ProcState.FATAL):
            child.move(ProcState.STOPPED, "stopped by the operator")

    # stopping --------------------------------------------------------------------------
    def shutdown(self, now: float | None = None) -> None:
        """Graceful stop: SIGTERM to every child, SIGKILL after stop_timeout; the second
        call kills at once."""
        now = time.monotonic() if now is None else now
        if self.shutting_down:
            log.warning("second stop request: SIGKILL to every child now")
            for child in self.children.values():
                child.kill()
            self.shutdown_deadline = min(self.shutdown_deadline, now)
            return
        self.shutting_down = True
        self.shutdown_deadline = now + self.scfg.stop_timeout
        log.info("stopping (%s); SIGKILL after %gs", self.summary(), self.scfg.stop_timeout)
        self.notifier.stopping(f"stopping: {self.summary()}")
        for child in self.children.values():
            if child.state in (ProcState.STARTING, ProcState.RUNNING):
                child.move(ProcState.STOPPING, "stopping (supervisor shutdown)")
            elif child.state in (ProcState.BACKOFF, ProcState.FATAL):
                child.move(ProcState.STOPPED, "supervisor shutdown")
            child.terminate(now, self.scfg.stop_timeout)

    def close(self) -> None:
        """Release sockets, pipes and files (after run() or a test's last turn)."""
        for child in self.children.values():
            self._unwatch(child)
            child.kill()
            if child.proc is not None:
                try:
                    child.proc.wait(1)
                except Exception:  # noqa: BLE001 - best effort at exit
                    pass
                child.reap()
            child.output.file.close()
        for name in list(self.pings):
            self._drop_ping(name)
        if self.wakeup is not None:
            signal.set_wakeup_fd(-1)
            for fd in self.wakeup:
                os.close(fd)
            self.wakeup = None
        self.control.close(0)
        self.notifier.close()
        self.ctx.term()

    # control socket --------------------------------------------------------------------
    def _on_control(self) -> None:
        for identity, req in rpc.requests(self.control, CONTROL_BATCH, self.bad_control):
            rpc.send(self.control, identity, rpc.answer(req, self.controller.call), log)

    def command(self, op: str, args: dict) -> object:
        """Run a control op in-process (raises UnknownProgram / BadRequest)."""
        return self.controller.call(op, args)
