"""One supervised child: its command, state, restart policy, log and health ping."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from luzia.config import SupervisorConfig
from luzia.supervisor.states import ProcState

log = logging.getLogger(__name__)


@dataclass
class Program:
    """What to run: a name, an argv and (optionally) the endpoint that answers ping."""

    name: str
    argv: list[str]
    ping: str = ""


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the supervisor dies (a backstop, Linux only)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class RotatingLog:
    """A child's log file, rotated by size: name.log, name.log.1, …"""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "ab")

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.file.flush()
        if self.max_bytes and self.file.tell() >= self.max_bytes:
            self.rotate()

    def rotate(self) -> None:
        self.file.close()
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.backups:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self.file = open(self.path, "ab")

    def tail(self, lines: int) -> list[str]:
        """The last `lines` lines, reaching into the previous file after a rotation."""
        out: list[str] = []
        for path in (self.path, self.path.with_name(f"{self.path.name}.1")):
            try:
                with open(path, "rb") as f:
                    f.seek(0, os.SEEK_END)
                    f.seek(max(0, f.tell() - 256 * 1024))
                    out = f.read().decode(errors="replace").splitlines() + out
            except OSError:
                pass
            if len(out) >= lines:
                break
        return out[-lines:]


@dataclass
class Child:
    program: Program
    cfg: SupervisorConfig
    log: RotatingLog
    echo: bool = False
    state: ProcState = ProcState.STOPPED
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float = 0.0
    restarts: int = 0
    backoff: float = 0.0
    deaths: deque = field(default_factory=deque)
    exit_status: int | None = None
    message: str = ""
    kill_at: float | None = None
    last_pong: float = 0.0
    wanted: bool = True         # False once an operator stopped it
    _partial: bytes = b""

    @property
    def name(self) -> str:
        return self.program.name

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else 0

    def move(self, new: ProcState, message: str = "") -> None:
        self.state = self.state.check(new)
        self.message = message

    def spawn(self, now: float, env: dict[str, str]) -> None:
        self.move(ProcState.STARTING)
        self.proc = subprocess.Popen(self.program.argv, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.started_at = self.last_pong = now
        self.exit_status = None
        self.kill_at = None
        log.info("%s started (pid %d)", self.name, self.proc.pid)

    def pump_output(self) -> None:
        """Copy what the child printed into its log (and to our stdout when echoing)."""
        if self.proc is None or self.proc.stdout is None:
            return
        try:
            data = self.proc.stdout.read()
        except (OSError, ValueError):
            return
        if not data:
            return
        self.log.write(data)
        if self.echo:
            data = self._partial + data
            lines = data.split(b"\n")
            self._partial = lines.pop()
            for line in lines:
                sys.stdout.write(f"{self.name:>7} | {line.decode(errors='replace')}\n")
            sys.stdout.flush()

    def reap(self) -> int | None:
        """The exit status if the child has ended (its pipe drained), else None."""
        if self.proc is None:
            return None
        code = self.proc.poll()
        if code is None:
            return None
        self.pump_output()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None
        self.exit_status = code
        return code

    def died(self, now: float, code: int) -> None:
        """The restart policy: backoff doubling to the max; FATAL when it flaps."""
        if now - self.started_at >= self.cfg.stable_after:
            self.backoff = 0.0
        self.deaths.append(now)
        while self.deaths and now - self.deaths[0] > self.cfg.flap_window:
            self.deaths.popleft()
        why = f"exited with status {code}"
        if len(self.deaths) >= self.cfg.flap_deaths:
            self.move(ProcState.FATAL, f"{why}; died {len(self.deaths)} times in "
                                       f"{self.cfg.flap_window:g}s: retry in {self.cfg.fatal_cooldown:g}s")
            self.restart_at = now + self.cfg.fatal_cooldown
            self.deaths.clear()
            log.error("%s is FATAL (flapping): %s", self.name, self.message)
            return
        self.backoff = min(self.cfg.backoff_max, self.backoff * 2 if self.backoff else self.cfg.backoff_initial)
        self.restart_at = now + self.backoff
        self.move(ProcState.BACKOFF, f"{why}; restart in {self.backoff:g}s")
        log.warning("%s %s", self.name, self.message)

    def terminate(self, now: float, timeout: float) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            self.kill_at = now + timeout

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass

    def to_dict(self, now: float) -> dict:
        up = round(now - self.started_at, 1) if self.state in (ProcState.RUNNING, ProcState.STARTING) else 0.0
        return {"name": self.name, "state": self.state.value, "pid": self.pid, "uptime": up,
                "restarts": self.restarts, "exit_status": self.exit_status, "message": self.message}
