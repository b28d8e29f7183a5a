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
from typing import TYPE_CHECKING, Any

from luzia.errors import ConfigError
from luzia.states import NEEDS_INPUT

if TYPE_CHECKING:
    from luzia.config import NotifyConfig

JOB_ENDS = ("completed", "failed", "killed", "rejected", "lost", "paused")
JOB_WAITS = ("needs_input",)         # a running job's events row that is no state
JOB_ROWS = JOB_ENDS + JOB_WAITS       # the kinds read from the broker's events table
JOB_FLAGS = ("stalled",)
FLEET = ("agent_dead", "queue_rejecting")
KINDS = JOB_ENDS + JOB_WAITS + JOB_FLAGS + FLEET
_ROW_NAMES = {"needs_input": NEEDS_INPUT}


def row_name(kind: str) -> str:
    """A kind as the broker's events table (and its PUB topics) spell it: `needs-input`."""
    return _ROW_NAMES.get(kind, kind)


def kind_name(text: str) -> str:
    """A kind as the config may spell it (`needs-input`, `Agent_Dead`) in its one spelling."""
    return text.strip().lower().replace("-", "_").replace(" ", "_")


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


def check_config(cfg: NotifyConfig) -> None:
    """ConfigError for a rule that could never work: unknown kind or target, no targets."""
    for name, url in cfg.targets.items():
        if "://" not in url:
            raise ConfigError(f"notify.targets.{name}: {url!r} is not an Apprise URL "
                              "(like slack://..., ntfy://..., json://host/path)")
    for i, rule in enumerate(cfg.rules):
        where = f"notify.rules[{i}]"
        if not rule.events:
            raise ConfigError(f"{where}: no events; name some of: {', '.join(KINDS)}")
        for event in rule.events:
            if kind_name(event) not in KINDS:
                raise ConfigError(f"{where}: unknown event {event!r}; known: {', '.join(KINDS)}")
        if not rule.targets:
            raise ConfigError(f"{where}: no targets; name some of [notify.targets]")
        for target in rule.targets:
            if target not in cfg.targets:
                known = ", ".join(sorted(cfg.targets)) or "(none)"
                raise ConfigError(f"{where}: unknown target {target!r}; [notify.targets] has {known}")
    if cfg.rate <= 0 or cfg.retry_initial <= 0 or cfg.retry_max < cfg.retry_initial:
        raise ConfigError("notify: rate and retry_initial must be positive and retry_max at "
                          "least retry_initial")
    if cfg.poll <= 0:
        raise ConfigError("notify.poll must be positive")
