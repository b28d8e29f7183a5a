"""Provider accounts and their usage limits, fleet-wide (docs/AGENTS.md).

An agent declares the accounts it may run jobs under (`[accounts.NAME]` on its host, named
in its Hello); one that declares none has one account of its own, `@<agent>`. A job whose
attempt ended on a usage limit marks its account limited until the reset, on every agent
that has it; an agent whose accounts are all limited takes no new job until the earliest
reset (the scheduler's `set_limited`), and its jobs wait with the reason. Assign names the
account to use: the job's last one when it is free there (its conversation lives under it),
else the first free one. The marks are kept in the store's meta table over broker restarts.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from luzia.broker.fleet import Agent, Fleet
from luzia.broker.store import Store

log = logging.getLogger(__name__)

META_KEY = "limited_accounts"


def own_account(agent: Agent) -> str:
    """The account of an agent that declares none."""
    return f"@{agent.name}"


class Accounts:
    """Limited accounts: account -> (until, the line that showed it)."""

    def __init__(self, store: Store, fleet: Fleet) -> None:
        self.store = store
        self.fleet = fleet
        saved = store.meta(META_KEY) or {}
        self.limited: dict[str, tuple[float, str]] = {
            str(k): (float(v[0]), str(v[1])) for k, v in saved.items()
            if isinstance(v, list) and len(v) == 2}

    def of(self, agent: Agent) -> list[str]:
        return list(agent.accounts) or [own_account(agent)]

    def free(self, agent: Agent, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        return [a for a in self.of(agent) if self.limited.get(a, (0.0, ""))[0] <= now]

    def pick(self, agent: Agent, last: str) -> str:
        """The account an Assign names ("" for an agent's own): `last` if free there."""
        free = self.free(agent)
        choice = last if last in free else (free[0] if free else self.of(agent)[0])
        return "" if choice == own_account(agent) else choice

    def mark(self, account: str, until: float, line: str) -> None:
        """A usage limit seen on `account` (its own account for an agent's ""): fleet-wide."""
        if until <= self.limited.get(account, (0.0, ""))[0]:
            return
        self.limited[account] = (until, line)
        log.warning("account %s limited until %s: %s", account,
                    time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(until)), line)
        self._save()
        self.apply()

    def expire(self, now: float) -> bool:
        """Marks whose reset has come are lifted. True if one was."""
        due = [a for a, (until, _) in self.limited.items() if until <= now]
        for account in due:
            del self.limited[account]
            log.info("account %s: its usage limit has reset", account)
        if due:
            self._save()
            self.apply(now)
        return bool(due)

    def apply(self, now: float | None = None) -> None:
        """Tell the fleet (and so the scheduler) which agents are held by their limits."""
        now = time.time() if now is None else now
        for agent in self.fleet:
            self.fleet.set_limited(agent, *self._hold(agent, now))

    def _hold(self, agent: Agent, now: float) -> tuple[float, str]:
        mine = self.of(agent)
        if self.free(agent, now):
            return 0.0, ""
        until = min(self.limited[a][0] for a in mine)
        names = ", ".join(mine)
        return until, f"account{'s' if len(mine) > 1 else ''} {names}"

    def _save(self) -> None:
        self.store.set_meta(META_KEY, {a: [u, line] for a, (u, line) in self.limited.items()}
                            or None)

    def rows(self) -> list[dict[str, Any]]:
        """Limited accounts for `luzia budget`: name, until, the line, agents holding it."""
        holders: dict[str, list[str]] = {}
        for agent in self.fleet:
            for account in self.of(agent):
                holders.setdefault(account, []).append(agent.name)
        return [{"account": a, "until": u, "line": line, "agents": sorted(holders.get(a, []))}
                for a, (u, line) in sorted(self.limited.items())]
