"""The states of a job this agent holds (one run of it), and the transitions between them.

    RUNNING ──cancel, timeout, stall kill, orphan, dropped──► STOPPING
    STOPPING ──SIGTERM reached the command──► TERM_SENT ──kill_grace──► KILL_SENT
    STOPPING ──its pid never showed, kill_grace──► RUNNER_KILLED ◄──kill_grace── KILL_SENT
    RUNNING / any stopping state ──exit code (or the process vanished)──► ENDED
    ENDED ──Done sent (or the broker took the held exit code as it)──► DONE_SENT
    DONE_SENT ──Done sent again (still listed, or a repeated Assign)──► DONE_SENT
    DONE_SENT ──the broker's beat no longer lists it──► FORGOTTEN
    ENDED ──the broker dropped it──► FORGOTTEN
    any stopping state ──a new attempt replaces a dropped run──► FORGOTTEN

A run is born RUNNING (assigned, or re-adopted alive) or ENDED (re-adopted after its end).
Anything else is a bug in the agent and raises IllegalTransition. Imports nothing of ours
but errors.
"""

from __future__ import annotations

import enum

from luzia.errors import IllegalTransition


class RunState(str, enum.Enum):
    RUNNING = "running"              # its command runs: progress, stall and timeout are watched
    STOPPING = "stopping"            # asked to stop; SIGTERM waits for the command's pid
    TERM_SENT = "term sent"          # SIGTERM went to the command's group; SIGKILL after the grace
    KILL_SENT = "kill sent"          # SIGKILL went; the runner removes what is left after the grace
    RUNNER_KILLED = "runner killed"  # the runner removed its session or wrapper; the end is near
    ENDED = "ended"                  # its exit code is known; no Done sent yet
    DONE_SENT = "done sent"          # Done sent; held until the broker acknowledges it
    FORGOTTEN = "forgotten"          # no longer ours: acknowledged, dropped or replaced

    def check(self, new: RunState) -> RunState:
        """`new` if this state may move to it; IllegalTransition otherwise."""
        if new not in TRANSITIONS[self]:
            raise IllegalTransition(f"run state {self.value} -> {new.value} is not allowed")
        return new

    @property
    def stopping(self) -> bool:
        """On its way down: the stop sequence is under way."""
        return self in STOPPING_STATES

    @property
    def ended(self) -> bool:
        """Its exit code is known."""
        return self in (RunState.ENDED, RunState.DONE_SENT, RunState.FORGOTTEN)


STOPPING_STATES = frozenset({RunState.STOPPING, RunState.TERM_SENT, RunState.KILL_SENT,
                             RunState.RUNNER_KILLED})

TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.RUNNING: frozenset({RunState.STOPPING, RunState.ENDED}),
    RunState.STOPPING: frozenset({RunState.TERM_SENT, RunState.RUNNER_KILLED, RunState.ENDED,
                                  RunState.FORGOTTEN}),
    RunState.TERM_SENT: frozenset({RunState.KILL_SENT, RunState.ENDED, RunState.FORGOTTEN}),
    RunState.KILL_SENT: frozenset({RunState.RUNNER_KILLED, RunState.ENDED, RunState.FORGOTTEN}),
    RunState.RUNNER_KILLED: frozenset({RunState.ENDED, RunState.FORGOTTEN}),
    RunState.ENDED: frozenset({RunState.DONE_SENT, RunState.FORGOTTEN}),
    RunState.DONE_SENT: frozenset({RunState.DONE_SENT, RunState.FORGOTTEN}),
    RunState.FORGOTTEN: frozenset(),
}
