"""What can be notified: the event kinds `[[notify.rules]]` name, where each comes from, and
which targets an event goes to.

Kinds come from three places (docs/NOTIFY.md has the table):
- a job's end, read from the broker's events table (`events.since`), so none is lost while
  the notifier is down: completed, failed, killed, rejected, lost, paused; and a running
  job that began to wait for a person, needs_input (its `needs-input` row: one
  notification each time it begins);
- a flag on a running job, seen in its PUB events and in `jobs.list` after a (re)start:
  stalled (one notification per attempt);
- the fleet, from PUB events and `agents.status` / `queue.status` after a (re)start:
  agent_dead, queue_rejecting (one per episode).
Every kind here is emitted by the broker of this release.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from luzia.notifyconf import (
    FLEET,
    NotifyConfig,
    kind_name,
)


@dataclass(frozen=True)
class NotifyEvent:
    """Something that happened that a rule may want told: `key` names it once and for all
    (a second sighting of the same key is the same event, never a second notification)."""

    kind: str
    key: str
    job: dict[str, Any] = field(default_factory=dict)   # the broker's job object, if a job's
    subject: str = ""          # an agent's name for agent_dead; "" otherwise
    detail: str = ""           # the reason, the broker's words
    at: float = 0.0            # unix time it happened

    @property
    def fleet(self) -> bool:
        return self.kind in FLEET


class Rules:
    """The configured rules, matched against events."""

    def __init__(self, cfg: NotifyConfig) -> None:
        self.rules = [(frozenset(kind_name(e) for e in r.events), frozenset(r.users),
                       frozenset(r.projects), tuple(r.targets)) for r in cfg.rules]

    @property
    def kinds(self) -> frozenset[str]:
        """Every kind some rule asks for."""
        return frozenset().union(*(r[0] for r in self.rules)) if self.rules else frozenset()

    def targets_for(self, ev: NotifyEvent) -> list[str]:
        """The targets `ev` goes to, each once, in the order the rules name them. A rule with
        users or projects sees only job events (an agent or the queue has neither)."""
        out: list[str] = []
        user, project = str(ev.job.get("user", "")), str(ev.job.get("project", ""))
        for kinds, users, projects, targets in self.rules:
            if ev.kind not in kinds:
                continue
            if (users or projects) and ev.fleet:
                continue
            if (users and user not in users) or (projects and project not in projects):
                continue
            out.extend(t for t in targets if t not in out)
        return out
