"""The arbiter: starts this host's children, restarts them by policy, pings them, answers
its control socket, and stops everything on SIGTERM/SIGINT. One zmq.Poller loop; periodic
work is `tick(now)`.

Control operations (Request.op on `endpoints.supervisor`; Reply.result):

- ``status`` → ``[{name, state, pid, uptime, restarts, exit_status, message}]``
- ``start`` {name} → the child's status; starts it now (also out of FATAL or BACKOFF)
- ``stop`` {name} → the child's status; stops it and keeps it stopped (the policy never
  undoes an operator's stop)
- ``restart`` {name} → the child's status
- ``tail`` {name, lines=50} → ``{"lines": [...]}`` from the child's log
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import zmq

from luzia import protocol
from luzia.config import Config, ensure_private_dir
from luzia.errors import ProtocolError
from luzia.supervisor.notify import Notifier
from luzia.supervisor.process import Child, Program, RotatingLog
from luzia.supervisor.states import ProcState

log = logging.getLogger(__name__)


def default_programs(cfg: Config) -> list[Program]:
    out = []
    if cfg.supervisor.broker:
        out.append(Program("broker", [sys.executable, "-m", "luzia.broker"], cfg.endpoints.control))
    if cfg.supervisor.agent:
        out.append(Program("agent", [sys.executable, "-m", "luzia.agents"],
                           f"ipc://{cfg.run_dir}/agent-{cfg.agent.name}"))
    return out


class Arbiter:
    def __init__(self, cfg: Config, programs: list[Program] | None = None, echo: bool = False,
                 notifier: Notifier | None = None) -> None:
        self.cfg = cfg
        self.scfg = cfg.supervisor
        ensure_private_dir(Path(cfg.home))
        ensure_private_dir(cfg.run_dir)
        log_dir = cfg.log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.children = {p.name: Child(p, self.scfg, RotatingLog(
            log_dir / f"{p.name}.log", self.scfg.log_max_bytes, self.scfg.log_backups), echo)
            for p in (programs if programs is not None else default_programs(cfg))}
        self.env = dict(os.environ)
        self.notifier = notifier or Notifier()
        self.ctx = zmq.Context()
        self.control = self.ctx.socket(zmq.ROUTER)
        self.control.setsockopt(zmq.LINGER, 0)
        self.control.setsockopt(zmq.MAXMSGSIZE, 65536)
        self.control.bind(cfg.endpoints.supervisor)
        self.poller = zmq.Poller()
        self.poller.register(self.control, zmq.POLLIN)
        self.pings: dict[str, zmq.Socket] = {}
        self.next_ping = 0.0
        self.next_watchdog = 0.0
        self.req = itertools.count(1)
        self.shutting_down = False
        self.shutdown_deadline = 0.0
        self.ready_sent = False
        self.done = False

    # loop ------------------------------------------------------------------------
    def run(self) -> None:
        now = time.monotonic()
        for child in self.children.values():
            self._start(child, now)
        while not self.done:
            self.turn()
        self.close()

    def turn(self, timeout: float = 0.1) -> None:
        ready = dict(self.poller.poll(timeout * 1000))
        if self.control in ready:
            self._on_control()
        for name, sock in list(self.pings.items()):
            if sock in ready:
                self._on_pong(name, sock)
        self.tick(time.monotonic())

    def tick(self, now: float) -> None:
        for child in self.children.values():
            child.pump_output()
            code = child.reap()
            if code is not None:
                self._exited(child, now, code)
            elif child.kill_at is not None and now >= child.kill_at:
                log.warning("%s did not stop in time; SIGKILL", child.name)
                child.kill()
                child.kill_at = None
        if self.shutting_down:
            if all(c.proc is None for c in self.children.values()):
                self.done = True
            elif now >= self.shutdown_deadline:
                for child in self.children.values():
                    child.kill()
            return
        for child in self.children.values():
            if child.state in (ProcState.BACKOFF, ProcState.FATAL) and child.wanted \
                    and now >= child.restart_at:
                child.restarts += 1
                self._start(child, now)
            elif child.state is ProcState.STARTING:
                if not child.program.ping:
                    if now - child.started_at >= min(1.0, self.scfg.start_grace):
                        child.move(ProcState.RUNNING)
                elif now - child.started_at > self.scfg.start_grace + self.scfg.ping_timeout:
                    self._hung(child, "never answered its health ping")
            elif child.state is ProcState.RUNNING and child.program.ping \
                    and now - child.last_pong > self.scfg.ping_timeout:
                self._hung(child, f"no answer to health pings for {now - child.last_pong:.0f}s")
        if now >= self.next_ping:
            self.next_ping = now + self.scfg.ping_interval
            for child in self.children.values():
                if child.program.ping and child.state in (ProcState.STARTING, ProcState.RUNNING):
                    self._ping(child)
        self._notify(now)

    def _start(self, child: Child, now: float) -> None:
        try:
            child.spawn(now, self.env)
        except OSError as exc:
            child.move(ProcState.BACKOFF, f"cannot start: {exc}")
            child.restart_at = now + self.scfg.backoff_max
            return
        if child.program.ping:
            self._ping(child, fresh=True)

    def _exited(self, child: Child, now: float, code: int) -> None:
        self._drop_ping(child.name)
        if self.shutting_down:
            child.move(ProcState.EXITED, f"exited with status {code}")
        elif child.state is ProcState.STOPPING:
            child.move(ProcState.STOPPED, "stopped by the operator" if not child.wanted else "")
            if child.wanted:     # a restart asked for
                self._start(child, now)
        else:
            child.died(now, code)

    def _hung(self, child: Child, why: str) -> None:
        log.error("%s is hung (%s): killing it", child.name, why)
        child.message = why
        child.kill()

    # health pings ------------------------------------------------------------------
    def _ping(self, child: Child, fresh: bool = False) -> None:
        if fresh:
            self._drop_ping(child.name)
        sock = self.pings.get(child.name)
        if sock is None:
            sock = self.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 4)
            sock.connect(child.program.ping)
            self.pings[child.name] = sock
            self.poller.register(sock, zmq.POLLIN)
        try:
            sock.send_multipart(protocol.encode(protocol.Request(req=next(self.req), op="ping")),
                                zmq.NOBLOCK)
        except zmq.Again:
            pass

    def _on_pong(self, name: str, sock: zmq.Socket) -> None:
        child = self.children[name]
        while sock.poll(0):
            try:
                reply = protocol.decode(sock.recv_multipart())
            except ProtocolError:
                continue
            if isinstance(reply, protocol.Reply) and reply.ok:
                child.last_pong = time.monotonic()
                if child.state is ProcState.STARTING:
                    child.move(ProcState.RUNNING)
                    log.info("%s is up (pid %d)", name, child.pid)

    def _drop_ping(self, name: str) -> None:
        sock = self.pings.pop(name, None)
        if sock is not None:
            self.poller.unregister(sock)
            sock.close(0)

    # systemd -------------------------------------------------------------------------
    def summary(self) -> str:
        return ", ".join(f"{c.name} {c.state.value}" for c in self.children.values())

    def _notify(self, now: float) -> None:
        if not self.notifier.enabled:
            return
        healthy = all(c.state is ProcState.RUNNING or not c.wanted for c in self.children.values())
        if healthy and not self.ready_sent:
            self.ready_sent = True
            self.notifier.send(ready="1", status=self.summary())
        if now >= self.next_watchdog:
            self.next_watchdog = now + (self.notifier.watchdog / 2 if self.notifier.watchdog else 5.0)
            if healthy or not self.ready_sent:
                self.notifier.send(watchdog="1", status=self.summary())
            else:
                self.notifier.send(status=self.summary())

    # stopping ------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Graceful stop: SIGTERM to every child, SIGKILL after stop_timeout; a second call kills."""
        now = time.monotonic()
        if self.shutting_down:
            log.warning("second stop request: killing children now")
            for child in self.children.values():
                child.kill()
            return
        self.shutting_down = True
        self.shutdown_deadline = now + self.scfg.stop_timeout
        self.notifier.send(stopping="1", status="stopping")
        log.info("stopping: %s", self.summary())
        for child in self.children.values():
            if child.state in (ProcState.STARTING, ProcState.RUNNING):
                child.move(ProcState.STOPPING)
            child.terminate(now, self.scfg.stop_timeout)

    def close(self) -> None:
        for name in list(self.pings):
            self._drop_ping(name)
        self.control.close(0)
        self.ctx.term()

    # control -------------------------------------------------------------------------
    def _on_control(self) -> None:
        for _ in range(64):
            try:
                frames = self.control.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                req = protocol.decode(frames[1:], expect=(protocol.Request,))
            except ProtocolError as exc:
                log.warning("bad control frame dropped: %s", exc)
                continue
            assert isinstance(req, protocol.Request)
            try:
                result = self.command(req.op, req.args)
                reply = protocol.Reply(req=req.req, ok=True, result=result)
            except KeyError as exc:
                reply = protocol.Reply(req=req.req, ok=False, error=str(exc.args[0]), code="not_found")
            except ValueError as exc:
                reply = protocol.Reply(req=req.req, ok=False, error=str(exc), code="bad_request")
            self.control.send_multipart([frames[0], *protocol.encode(reply)])

    def command(self, op: str, args: dict[str, Any]) -> Any:
        now = time.monotonic()
        if op == "status":
            return [c.to_dict(now) for c in self.children.values()]
        if op not in ("start", "stop", "restart", "tail"):
            raise ValueError(f"unknown operation {op!r}; known: status, start, stop, restart, tail")
        name = args.get("name")
        child = self.children.get(name) if isinstance(name, str) else None
        if child is None:
            raise KeyError(f"no program {name!r}; programs: {', '.join(self.children)}")
        if op == "tail":
            lines = args.get("lines", 50)
            return {"lines": child.log.tail(lines if isinstance(lines, int) and lines > 0 else 50)}
        if self.shutting_down:
            raise ValueError("the supervisor is shutting down")
        if op == "stop":
            child.wanted = False
            if child.state in (ProcState.STARTING, ProcState.RUNNING):
                child.move(ProcState.STOPPING, "stopping (operator)")
                child.terminate(now, self.scfg.stop_timeout)
            elif child.state in (ProcState.BACKOFF, ProcState.FATAL):
                child.move(ProcState.STOPPED, "stopped by the operator")
        else:
            child.wanted = True
            child.deaths.clear()
            child.backoff = 0.0
            if child.state in (ProcState.STARTING, ProcState.RUNNING) and op == "restart":
                child.move(ProcState.STOPPING, "restarting (operator)")
                child.terminate(now, self.scfg.stop_timeout)
            elif child.state in (ProcState.STOPPED, ProcState.BACKOFF, ProcState.FATAL, ProcState.EXITED):
                self._start(child, now)
        return child.to_dict(now)
