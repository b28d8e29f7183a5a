"""Child process states (supervisord's names) and the transitions between them.

    STOPPED  ──start──────────► STARTING ──ping answered──► RUNNING
    STARTING/RUNNING ──died───► BACKOFF  ──delay over─────► STARTING
    STARTING/RUNNING ──died N times in the window──► FATAL ──cool-down over──► STARTING
    STARTING/RUNNING ──stop───► STOPPING ──ended──► STOPPED (operator) | EXITED (shutdown)
    BACKOFF/FATAL ──stop──────► STOPPED;  EXITED ──start──► STARTING

Anything else is a bug in the supervisor and raises IllegalTransition.
"""

from __future__ import annotations

import enum

from luzia.errors import IllegalTransition


class ProcState(str, enum.Enum):
    STOPPED = "stopped"      # not running and not meant to (operator stop, or not started yet)
    STARTING = "starting"    # spawned; waiting for its first health answer
    RUNNING = "running"      # answering health pings (or past its start grace if it has none)
    BACKOFF = "backoff"      # died; restarted when its backoff delay is over
    STOPPING = "stopping"    # SIGTERM sent; SIGKILL when the stop timeout is over
    EXITED = "exited"        # ended while the supervisor shuts down
    FATAL = "fatal"          # flapping; retried after the cool-down (never abandoned)

    def check(self, new: ProcState) -> ProcState:
        """`new` if this state may move to it; IllegalTransition otherwise."""
        if new not in TRANSITIONS[self]:
            raise IllegalTransition(f"process state {self.value} -> {new.value} is not allowed")
        return new

    @property
    def alive(self) -> bool:
        """A process exists in this state."""
        return self in (ProcState.STARTING, ProcState.RUNNING, ProcState.STOPPING)


TRANSITIONS: dict[ProcState, frozenset[ProcState]] = {
    ProcState.STOPPED: frozenset({ProcState.STARTING}),
    ProcState.STARTING: frozenset({ProcState.RUNNING, ProcState.BACKOFF, ProcState.FATAL,
                                   ProcState.STOPPING}),
    ProcState.RUNNING: frozenset({ProcState.BACKOFF, ProcState.FATAL, ProcState.STOPPING}),
    ProcState.BACKOFF: frozenset({ProcState.STARTING, ProcState.STOPPED}),
    ProcState.STOPPING: frozenset({ProcState.STOPPED, ProcState.EXITED}),
    ProcState.EXITED: frozenset({ProcState.STARTING}),
    ProcState.FATAL: frozenset({ProcState.STARTING, ProcState.STOPPED}),
}
