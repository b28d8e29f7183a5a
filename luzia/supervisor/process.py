"""One supervised child: what to run (Program), and its process, state, restart policy and
output (Child). The arbiter drives it; nothing here blocks."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from luzia.config import SupervisorConfig
from luzia.supervisor.logs import ChildOutput
from luzia.supervisor.states import ProcState

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
READ_CHUNK = 65536
READS_PER_TURN = 16      # at most 1 MiB of one child's output per loop turn: no starvation


@dataclass(frozen=True)
class Program:
    """What to run: a name, an argv, and the endpoint that answers `ping` ("" for none:
    such a child counts as running once it has stayed up for its start grace)."""

    name: str
    argv: list[str]
    ping: str = ""


def die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGTERM when the supervisor dies (a Linux
    backstop, so no child outlives a supervisor killed with SIGKILL); None elsewhere.
    libc is looked up here, in the parent: the child only makes the one call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    return preexec


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


@dataclass
class Child:
    """A Program's process and its bookkeeping."""

    program: Program
    cfg: SupervisorConfig
    output: ChildOutput
    state: ProcState = ProcState.STOPPED
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float = 0.0       # BACKOFF / FATAL: when to start again
    starts: int = 0               # times spawned
    backoff: float = 0.0          # the last backoff delay (0: none yet)
    deaths: deque = field(default_factory=deque)   # monotonic times of recent deaths
    exit_status: int | None = None
    message: str = ""
    kill_at: float | None = None  # STOPPING / hung: SIGKILL at this time
    last_ping: float = 0.0        # when the last health ping was sent
    last_pong: float = 0.0        # when the last health answer came (spawn time at first)
    hung: bool = False            # SIGKILLed for not answering; waiting to be reaped
    wanted: bool = True           # False after an operator's stop; only an operator undoes it

    @property
    def name(self) -> str:
        return self.program.name

    @property
    def restarts(self) -> int:
        """Starts after the first one (by the policy or by an operator)."""
        return max(0, self.starts - 1)

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    @property
    def fd(self) -> int | None:
        """The read end of the child's stdout+stderr pipe, for the poller."""
        return self.proc.stdout.fileno() if self.proc is not None and self.proc.stdout else None

    def move(self, new: ProcState, message: str = "") -> None:
        self.state = self.state.check(new)
        self.message = message

    # process ------------------------------------------------------------------------
    def spawn(self, now: float, env: dict[str, str]) -> None:
        """Start the process (STARTING). OSError if it cannot be started."""
        self.move(ProcState.STARTING)
        self.starts += 1
        self.proc = subprocess.Popen(
            self.program.argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, close_fds=True,
            preexec_fn=die_with_parent())
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.started_at = self.last_pong = now
        self.hung = False
        self.kill_at = None
        log.info("%s started (pid %d): %s", self.name, self.proc.pid, " ".join(self.program.argv))

    def pump_output(self) -> bool:
        """Copy what the child printed to its log; False once the pipe is at its end."""
        fd = self.fd
        if fd is None:
            return False
        for _ in range(READS_PER_TURN):
            try:
                data = os.read(fd, READ_CHUNK)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not data:
                return False
            self.output.feed(data)
        return True

    def reap(self) -> int | None:
        """The exit status if the process has ended (its pipe drained first), else None."""
        if self.proc is None or self.proc.poll() is None:
            return None
        for _ in range(4):  # bounded: a grandchild may hold the pipe open forever
            if not self.pump_output():
                break
        self.output.flush()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        code = self.proc.returncode
        self.proc = None
        self.exit_status = code
        return code

    def terminate(self, now: float, timeout: float) -> None:
        """SIGTERM now, SIGKILL at now + timeout (the arbiter's tick enforces it)."""
        self._signal(signal.SIGTERM)
        if self.proc is not None:
            self.kill_at = now + timeout

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass

    # policy -------------------------------------------------------------------------
    def died(self, now: float, code: int) -> None:
        """The restart policy for a death nobody asked for: BACKOFF with a delay doubling
        from backoff_initial to backoff_max (from the start again after a stable run), or
        FATAL after flap_deaths deaths within flap_window, retried after fatal_cooldown."""
        cfg = self.cfg
        if now - self.started_at >= cfg.stable_after:
            self.backoff = 0.0
        self.deaths.append(now)
        while self.deaths and now - self.deaths[0] > cfg.flap_window:
            self.deaths.popleft()
        why = self.message if self.message.startswith("hung") else describe_exit(code)
        if len(self.deaths) >= cfg.flap_deaths:
            self.move(ProcState.FATAL, f"{why}; flapping: died {len(self.deaths)} times in "
                                       f"{cfg.flap_window:g}s; retry in {cfg.fatal_cooldown:g}s")
            self.restart_at = now + cfg.fatal_cooldown
            self.deaths.clear()
            self.backoff = 0.0
            log.error("%s FATAL: %s", self.name, self.message)
            return
        self.backoff = min(cfg.backoff_max, self.backoff * 2 if self.backoff else cfg.backoff_initial)
        self.restart_at = now + self.backoff
        self.move(ProcState.BACKOFF, f"{why}; restart in {self.backoff:g}s")
        log.warning("%s %s", self.name, self.message)

    def forgive(self) -> None:
        """An operator started it: forget the deaths and the backoff."""
        self.deaths.clear()
        self.backoff = 0.0

    def to_dict(self, now: float) -> dict[str, Any]:
        """One row of the `status` reply."""
        up = round(now - self.started_at, 1) if self.state in (ProcState.STARTING, ProcState.RUNNING) else 0.0
        return {"name": self.name, "state": self.state.value, "pid": self.pid, "uptime": up,
                "restarts": self.restarts, "exit_status": self.exit_status, "message": self.message}
