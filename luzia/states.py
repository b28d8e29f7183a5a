"""Job and agent states with their legal transitions. Imports nothing of ours but errors."""

from __future__ import annotations

import enum

from luzia.errors import IllegalTransition


class JobState(str, enum.Enum):
    PENDING = "pending"
    ASSIGNED = "assigned"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    KILLED = "killed"
    REJECTED = "rejected"
    LOST = "lost"
    PAUSED = "paused"       # its provider's usage limit: waits for the reset, holds no credit

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    def check(self, new: JobState) -> JobState:
        """Return `new` if self -> new is legal, else raise IllegalTransition."""
        if new not in _JOB_TRANSITIONS[self]:
            raise IllegalTransition(f"job state {self.value} -> {new.value} is not allowed")
        return new


TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.KILLED, JobState.REJECTED})
TERMINAL_NAMES = frozenset(s.value for s in TERMINAL)      # as the wire and the store spell them
JOB_STATE_NAMES = tuple(s.value for s in JobState)
# what an operator's `luzia retry` runs again (a paused job without waiting for its reset)
RETRYABLE = frozenset({JobState.FAILED, JobState.KILLED, JobState.LOST, JobState.PAUSED})
RETRYABLE_NAMES = frozenset(s.value for s in RETRYABLE)
# not a state: a running job began to wait for a person (issue 14). Its events row and PUB
# topic (`job.needs-input`) carry this name; the job stays running, with `needs_input` set
NEEDS_INPUT = "needs-input"
JOB_EVENT_NAMES = JOB_STATE_NAMES + (NEEDS_INPUT,)   # the names in the events table

_JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.ASSIGNED, JobState.KILLED, JobState.FAILED, JobState.REJECTED}),
    # assigned -> pending: the agent never confirmed (lost message, agent gone) and the job is requeued
    JobState.ASSIGNED: frozenset({JobState.RUNNING, JobState.PENDING, JobState.COMPLETED,
                                  JobState.FAILED, JobState.KILLED, JobState.LOST,
                                  JobState.PAUSED}),
    JobState.RUNNING: frozenset({JobState.COMPLETED, JobState.FAILED, JobState.KILLED,
                                 JobState.LOST, JobState.PENDING, JobState.PAUSED}),
    # lost: its agent stopped beating; it comes back (running/completed/...) or is requeued (pending)
    JobState.LOST: frozenset({JobState.RUNNING, JobState.PENDING, JobState.COMPLETED,
                              JobState.FAILED, JobState.KILLED, JobState.PAUSED}),
    # paused: its attempt ended on a usage limit; pending again at the reset (or an operator's
    # retry), killed by a cancel, failed when it may pause no more
    JobState.PAUSED: frozenset({JobState.PENDING, JobState.KILLED, JobState.FAILED}),
    # a failed or killed job may be retried as a new attempt
    JobState.FAILED: frozenset({JobState.PENDING}),
    JobState.KILLED: frozenset({JobState.PENDING}),
    JobState.COMPLETED: frozenset(),
    JobState.REJECTED: frozenset(),
}


def exit_text(code: int | None) -> str:
    """How an ended process reads everywhere (a job's reason, its attempts, the views):
    `exit 1`; `exit -` when the code is unknown."""
    return f"exit {'-' if code is None else code}"


class Priority(enum.IntEnum):
    """Lower value runs first. Seed 003's Beads priorities 0-3 map onto these directly."""

    CRITICAL = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3

    @classmethod
    def parse(cls, value: str | int) -> Priority:
        text = str(value).strip()
        try:
            if isinstance(value, int) and not isinstance(value, bool) or text.isdigit():
                return cls(int(text))      # seed 003's 0-3
            return cls[text.upper()]
        except (KeyError, ValueError):
            names = "|".join(p.name.lower() for p in cls)
            raise ValueError(f"priority must be one of {names} (or 0-3), not {value!r}") from None

    @property
    def label(self) -> str:
        return self.name.lower()


# what `--priority` takes: a priority's name, or 0-3, the Beads priorities of the older async
# dispatcher (seed 003, docs/GLOSSARY.md)
PRIORITY_WORDS = tuple(p.name.lower() for p in Priority) + tuple(str(int(p)) for p in Priority)


class AgentState(str, enum.Enum):
    """An agent's liveness. A drain is not a state: a drained agent can still die and come
    back (`Agent.draining`, DECISIONS 28)."""

    LIVE = "live"
    DEAD = "dead"


class NoticeState(str, enum.Enum):
    """A notification in luzia-notify's outbox (luzia/notify/outbox.py)."""

    PENDING = "pending"     # due now or at its next try
    SENT = "sent"           # its target took it
    FAILED = "failed"       # not delivered within notify.give_up_after: logged and counted

    def check(self, new: NoticeState) -> NoticeState:
        if new not in _NOTICE_TRANSITIONS[self]:
            raise IllegalTransition(f"notification state {self.value} -> {new.value} is not allowed")
        return new


_NOTICE_TRANSITIONS: dict[NoticeState, frozenset[NoticeState]] = {
    NoticeState.PENDING: frozenset({NoticeState.PENDING, NoticeState.SENT, NoticeState.FAILED}),
    NoticeState.SENT: frozenset(),
    NoticeState.FAILED: frozenset(),
}
