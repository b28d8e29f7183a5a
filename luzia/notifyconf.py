"""The [notify] sections of the config (targets and rules) and the vocabulary of the events
a rule may name: read by config.py when it loads the file (a rule that could never work is a
ConfigError at load) and by luzia-notify (luzia/notify/) when it routes events."""

from __future__ import annotations

from dataclasses import field

from luzia.errors import ConfigError
from luzia.frozen import Frozen, frozen
from luzia.states import NEEDS_INPUT

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


@frozen
class NotifyRule(Frozen):
    """[[notify.rules]]: these events of these users'/projects' jobs go to these targets."""

    events: list[str] = field(default_factory=list)    # KINDS
    targets: list[str] = field(default_factory=list)   # names in notify.targets
    users: list[str] = field(default_factory=list)     # empty: every user
    projects: list[str] = field(default_factory=list)  # empty: every project


@frozen
class NotifyConfig(Frozen):
    """[notify]: luzia-notify, run by the supervisor beside the broker when there are rules."""

    targets: dict[str, str] = field(default_factory=dict)   # name -> Apprise URL
    rules: list[NotifyRule] = field(default_factory=list)
    rate: float = 20.0                # notifications per target per minute (and the burst)
    retry_initial: float = 2.0        # seconds before the first retry, doubling ...
    retry_max: float = 300.0          # ... up to this
    give_up_after: float = 86400.0    # seconds after which an undelivered notification fails
    poll: float = 5.0                 # seconds between catch-ups when no event says there is news
    link: str = ""                    # a job's page, "https://lz.example/jobs/{id}"; "": the dashboard's
    db: str = ""                      # default: $LUZIA_HOME/notify.db
    keep_days: float = 30.0           # delivered and failed notifications kept this long
    metrics_port: int = 0             # 0: broker.metrics_port + 1 when the broker's are on


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
