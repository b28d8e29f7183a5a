"""A job as the broker holds it (`Job`, mutated only by the broker's loop) and the names of
its fields that the jobs table keeps as columns (luzia/broker/store.py writes them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from luzia import protocol
from luzia.states import JobState, Priority

# schema 4: agent-aware jobs (docs/AGENTS.md), mutable as the job runs
AGENTWORK = ("cost_usd", "tokens_in", "tokens_out", "cache_read", "cache_write", "turns",
             "model", "session_id", "account", "resume", "paused_until", "pauses")
# the jobs table's scalar columns, in its order: a job's fields of the same names
SCALARS = ("id", "seq", "project", "user", "task", "priority", "type", "timeout",
           "max_retries", "retries", "workdir", "state", "reason", "host", "attempt",
           "progress", "message", "exit_code", "submitted_at", "assigned_at", "started_at",
           "finished_at", "updated_at", "submitter") + (
    # schema 3: workspaces (docs/WORKSPACES.md), written by `save_workspace`
    "repo", "base", "base_commit", "branch", "workspace", "workspace_host", "head_commit",
    "files_changed", "lines_added", "lines_removed", "push", "outcome", "outcome_at") + AGENTWORK

# an enum's .value / Priority(n).label go through Python-level descriptors (~1 µs each);
# a job's event and row read them on every submission
STATE_VALUE = {s: s.value for s in JobState}
PRIORITY_LABEL = {int(p): p.label for p in Priority}


@dataclass(slots=True)
class Job:
    """A job as the broker holds it. Mutated only by the broker's loop."""

    id: str
    seq: int
    project: str
    user: str
    task: str
    priority: int
    type: str
    timeout: float
    max_retries: int
    workdir: str
    submitted_at: float
    state: JobState = JobState.PENDING
    after: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    reason: str = ""
    host: str = ""
    attempt: int = 0
    progress: float = -1.0
    message: str = ""
    tail: list[str] = field(default_factory=list)
    exit_code: int | None = None
    stalled: bool = False
    stalled_since: float | None = None    # unix time its output stopped (kept in memory only)
    # its pane waits for a person (issue 14): memory only, its agent reports it again after
    # a restart of ours; the events table has a `needs-input` row per time it began
    needs_input: bool = False
    needs_input_since: float | None = None
    needs_input_lines: list[str] = field(default_factory=list)
    session: str = ""                     # its tmux session on its agent's host (memory only;
                                          # after a restart from its `started` event row)
    assigned_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float = 0.0
    submitter: str | None = None          # schema 2; filled in by issue 17 item 7
    repo: str = ""                        # schema 3 (workspaces): as submitted, "" for none
    base: str = ""                        # the base asked for ("": the repo's HEAD)
    base_commit: str = ""                 # fixed at the first attempt, kept for retries
    branch: str = ""                      # luzia/<job id>, once an agent made the worktree
    workspace: str = ""                   # the worktree's path on workspace_host ("": removed)
    workspace_host: str = ""
    head_commit: str = ""                 # the branch's tip after the end commit ("": no changes)
    files_changed: int | None = None      # None: not known (yet)
    lines_added: int = 0
    lines_removed: int = 0
    push: str = ""                        # a URL repo's branch: "pushed", "failed: ..." or ""
    outcome: str = ""                     # "merged", "squashed", "discarded" or ""
    outcome_at: float | None = None
    # schema 4 (docs/AGENTS.md): the sums over its attempts, as their output adapters saw them
    cost_usd: float | None = None         # None: no attempt reported a cost
    tokens_in: int = 0
    tokens_out: int = 0
    cache_read: int = 0
    cache_write: int = 0
    turns: int = 0
    model: str = ""                       # the last attempt's that said
    session_id: str = ""                  # the agent's conversation, the last one seen
    account: str = ""                     # the [accounts.*] of its current (or last) attempt
    resume: str = ""                      # the session its next attempt resumes ("": fresh)
    paused_until: float | None = None     # paused: the usage limit's reset (unix time)
    pauses: int = 0                       # times a usage limit paused it
    attempt_usage: protocol.Usage = protocol.NO_USAGE   # its current attempt's (in the attempts row)

    def move(self, new: JobState, reason: str | None = None) -> None:
        """Change state through the state machine (raises IllegalTransition on a bug)."""
        self.state = self.state.check(new)
        if reason is not None:
            self.reason = reason

    def reset_attempt(self) -> None:
        """Clear what belongs to one attempt (its host, times, exit, progress): the job is
        pending again, or its next attempt begins. The attempts table keeps the old one."""
        self.host = ""
        self.assigned_at = self.started_at = self.finished_at = self.exit_code = None
        self.progress, self.message = -1.0, ""
        self.stalled, self.stalled_since = False, None
        self.attempt_usage = protocol.NO_USAGE
        self.clear_needs_input()
        self.session = ""

    def clear_needs_input(self) -> None:
        self.needs_input, self.needs_input_since, self.needs_input_lines = False, None, []

    def summary(self) -> dict[str, Any]:
        """The fields an event carries."""
        return {"id": self.id, "state": STATE_VALUE[self.state], "project": self.project,
                "user": self.user, "priority": PRIORITY_LABEL[self.priority], "host": self.host,
                "attempt": self.attempt, "progress": self.progress, "message": self.message,
                "exit_code": self.exit_code, "reason": self.reason, "stalled": self.stalled,
                "cost_usd": self.cost_usd, "paused_until": self.paused_until,
                "needs_input": self.needs_input}

    def to_dict(self, with_tail: bool = False) -> dict[str, Any]:
        """The job object of the control protocol (docs/PROTOCOL.md)."""
        out = {name: getattr(self, name) for name in SCALARS if name != "seq"}
        out["state"] = self.state.value
        out["priority"] = Priority(self.priority).label
        out["after"] = list(self.after)
        out["metadata"] = dict(self.metadata)
        out["stalled"] = self.stalled
        out["stalled_since"] = self.stalled_since if self.stalled else None
        out["why"] = ""
        out["session"] = self.session
        out["needs_input"] = self.needs_input
        out["needs_input_since"] = self.needs_input_since
        if with_tail:
            out["tail"] = list(self.tail)
            out["needs_input_lines"] = list(self.needs_input_lines)
        return out
