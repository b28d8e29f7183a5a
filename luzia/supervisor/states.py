"""Child process states (supervisord's) and their legal transitions."""

from __future__ import annotations

import enum

from luzia.errors import IllegalTransition


class ProcState(str, enum.Enum):
    STOPPED = "stopped"      # not running, and not meant to (operator stop, or not started)
    STARTING = "starting"    # started, within its start grace
    RUNNING = "running"
    BACKOFF = "backoff"      # died; waiting to be restarted
    STOPPING = "stopping"    # SIGTERM sent
    EXITED = "exited"        # ended while the supervisor shuts down
    FATAL = "fatal"          # flapping; retried after a cool-down

    def check(self, new: "ProcState") -> "ProcState":
        if new not in TRANSITIONS[self]:
            raise IllegalTransition(f"process state {self.value} -> {new.value} is not allowed")
        return new


TRANSITIONS = {
    ProcState.STOPPED: {ProcState.STARTING},
    ProcState.STARTING: {ProcState.RUNNING, ProcState.BACKOFF, ProcState.FATAL, ProcState.STOPPING},
    ProcState.RUNNING: {ProcState.BACKOFF, ProcState.FATAL, ProcState.STOPPING},
    ProcState.BACKOFF: {ProcState.STARTING, ProcState.STOPPED},
    ProcState.STOPPING: {ProcState.STOPPED, ProcState.EXITED},
    ProcState.EXITED: {ProcState.STARTING},
    ProcState.FATAL: {ProcState.STARTING, ProcState.STOPPED},
}
