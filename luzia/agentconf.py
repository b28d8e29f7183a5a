"""The config of agent-aware jobs (docs/AGENTS.md): an agent command's output format and
the argv that resumes its conversation, the accounts a host's agent runs jobs under, the
budgets per user and project, and what a provider's usage limit does. Sections of
luzia/config.py's Config, kept here with their checks.
"""

from __future__ import annotations

import re
from dataclasses import field

from luzia.errors import ConfigError
from luzia.frozen import Frozen, frozen

ADAPTER_FORMATS = ("none", "claude", "codex")   # luzia/agents/adapters/: what an agent's output says


@frozen
class AgentCommand(Frozen):
    """The command of one task type (`[agent.commands]`): its argv, the format of its output
    (docs/AGENTS.md) and the argv that resumes a conversation (`{session_id}`). A plain
    list in the file is its argv alone."""

    PLAIN_LIST = "argv"               # configbuild.py: `code = ["claude", "-p", "{task}"]`

    argv: list[str] = field(default_factory=list)
    format: str = "none"              # none | claude | codex
    resume_argv: list[str] = field(default_factory=list)   # e.g. ["claude", "--resume", "{session_id}", ...]


@frozen
class Account(Frozen):
    """A provider account this host's agent may run jobs under (`[accounts.NAME]`): the
    environment that selects it, e.g. CLAUDE_CONFIG_DIR or an API key. A usage limit
    belongs to an account, and marks it limited fleet-wide until its reset."""

    env: dict[str, str] = field(default_factory=dict)


@frozen
class Budget(Frozen):
    """A spending cap in USD; 0: none."""

    day: float = 0.0                  # per UTC day
    month: float = 0.0                # per UTC calendar month


@frozen
class BudgetsConfig(Frozen):
    """`[budgets.users.NAME]` and `[budgets.projects.NAME]`: over a cap, no new job of that
    user or project starts until the period resets (a running one is never stopped)."""

    users: dict[str, Budget] = field(default_factory=dict)
    projects: dict[str, Budget] = field(default_factory=dict)


@frozen
class LimitsConfig(Frozen):
    """Provider usage limits: a job whose output shows one is paused until the reset."""

    enabled: bool = True              # off: such a job fails (or retries) as any other
    max_pauses: int = 5               # a job paused this often fails on its next limit
    resume: bool = True               # resume the agent's conversation (resume_argv) when it can
    wait: float = 3600.0              # seconds to wait when a usage limit names no reset time
    rate_wait: float = 60.0           # ... when the output shows HTTP 429 / a rate limit
    patterns: list[str] = field(default_factory=list)   # more regexes that mean a usage limit


def check(default: AgentCommand, named: dict[str, AgentCommand], accounts: dict[str, Account],
          limits: LimitsConfig) -> None:
    """ConfigError for a bad output format, resume_argv, account name or limit pattern;
    `default` is [agent]'s own command, `named` its [agent.commands]."""
    commands = [("agent", default)] + [(f"agent.commands.{k}", c) for k, c in named.items()]
    for where, command in commands:
        if command.format not in ADAPTER_FORMATS:
            raise ConfigError(f"{where}.format must be one of {', '.join(ADAPTER_FORMATS)}, "
                              f"not {command.format!r}")
        if where != "agent" and not command.argv:
            raise ConfigError(f"{where}.argv is empty")
        if command.resume_argv and not any("{session_id}" in a for a in command.resume_argv):
            raise ConfigError(f"{where}.resume_argv must contain {{session_id}}")
    for name in accounts:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
            raise ConfigError(f"accounts.{name}: an account name is letters, digits, . _ - "
                              "(at most 64)")
    for i, pattern in enumerate(limits.patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"limits.patterns[{i}] is not a valid regular expression: "
                              f"{exc}") from None
