"""Cost accounting and budgets (docs/AGENTS.md).

Every attempt's usage, as its agent's output adapter reports it (Progress, Done), is added
to its job's sums and to the spend ledger (the `spend` table: USD per UTC day, user and
project; kept when old jobs are pruned). `[budgets.users.NAME]` and
`[budgets.projects.NAME]` cap the spend per UTC day and month: a user or project at or over
a cap is blocked in the scheduler (its jobs wait with the reason), until the period resets;
a job already running is never stopped for it. A job whose adapter reports no cost counts
zero ("no cost reported").
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from luzia import protocol
from luzia.agentconf import Budget
from luzia.broker.job import Job
from luzia.broker.scheduler import Scheduler
from luzia.broker.store import Store
from luzia.config import Config

log = logging.getLogger(__name__)

KINDS = ("user", "project")
PERIODS = ("day", "month")


@dataclass
class Totals:
    """What the broker counted since it started (Prometheus counters, metrics.py)."""

    cost_usd: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cache_read: int = 0
    cache_write: int = 0
    pauses: int = 0


def _utc(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, dt.UTC)


def period_start(period: str, now: float) -> dt.datetime:
    day = _utc(now).replace(hour=0, minute=0, second=0, microsecond=0)
    return day if period == "day" else day.replace(day=1)


def period_end(period: str, now: float) -> dt.datetime:
    start = period_start(period, now)
    if period == "day":
        return start + dt.timedelta(days=1)
    return (start + dt.timedelta(days=32)).replace(day=1)


class Budgets:
    """The spend of this UTC month by (kind, name, day), the caps, and the scheduler's blocks."""

    def __init__(self, cfg: Config, store: Store, sched: Scheduler) -> None:
        self.caps: dict[str, dict[str, Budget]] = {"user": dict(cfg.budgets.users),
                                                   "project": dict(cfg.budgets.projects)}
        self.store = store
        self.sched = sched
        self.totals = Totals()
        self.month = ""
        self.spent: dict[tuple[str, str, str], float] = {}    # (kind, name, day) -> USD
        self.reload(time.time())

    def reload(self, now: float) -> None:
        """Read this month's ledger again (at start and when a month begins), then block."""
        self.month = period_start("month", now).strftime("%Y-%m")
        self.spent = {}
        for day, user, project, cost in self.store.spend_since(f"{self.month}-01"):
            self._count(day, user, project, cost)
        self.check_all(now)

    def _count(self, day: str, user: str, project: str, cost: float) -> None:
        for kind, name in (("user", user), ("project", project)):
            key = (kind, name, day)
            self.spent[key] = self.spent.get(key, 0.0) + cost

    # usage --------------------------------------------------------------------------
    def record(self, job: Job, usage: protocol.Usage) -> bool:
        """An attempt's usage so far (cumulative within the attempt): its growth goes to the
        job's sums and the ledger. True if anything changed (the caller saves the job)."""
        old = job.attempt_usage
        if usage == old or not usage.known:
            return False
        cost = max(0.0, usage.cost_usd) - max(0.0, old.cost_usd)
        if usage.cost_usd >= 0:
            job.cost_usd = round((job.cost_usd or 0.0) + cost, 9)
        for name in ("tokens_in", "tokens_out", "cache_read", "cache_write", "turns"):
            grown = getattr(usage, name) - getattr(old, name)
            setattr(job, name, max(0, getattr(job, name) + grown))
            if hasattr(self.totals, name):
                setattr(self.totals, name, getattr(self.totals, name) + max(0, grown))
        job.model = usage.model or job.model
        job.session_id = usage.session_id or job.session_id
        job.attempt_usage = usage
        self.store.save_attempt(job, None)
        if cost > 0:
            now = time.time()
            self.totals.cost_usd += cost
            day = _utc(now).strftime("%Y-%m-%d")
            self.store.add_spend(day, job.user, job.project, cost)
            if day.startswith(self.month):
                self._count(day, job.user, job.project, cost)
            self.check(("user", job.user), now)
            self.check(("project", job.project), now)
        return True

    # caps --------------------------------------------------------------------------
    def spent_in(self, kind: str, name: str, period: str, now: float) -> float:
        day = _utc(now).strftime("%Y-%m-%d")
        if period == "day":
            return self.spent.get((kind, name, day), 0.0)
        return sum(c for (k, n, d), c in self.spent.items()
                   if k == kind and n == name and d.startswith(day[:7]))

    def over(self, kind: str, name: str, now: float) -> str:
        """Why `name` may start nothing now (the first cap it reached), or ""."""
        cap = self.caps[kind].get(name)
        if cap is None:
            return ""
        for period in PERIODS:
            limit = getattr(cap, period)
            spent = self.spent_in(kind, name, period, now)
            if limit and spent >= limit:
                when = "today" if period == "day" else "this month"
                end = period_end(period, now)
                resets = "00:00 UTC" if period == "day" else end.strftime("%b %d 00:00 UTC")
                return (f"budget: {kind} {name} spent ${spent:.2f} of ${limit:.2f} {when}; "
                        f"resets {resets}")
        return ""

    def check(self, key: tuple[str, str], now: float) -> None:
        kind, name = key
        reason = self.over(kind, name, now)
        if reason:
            if (kind, name) not in self.sched.blocked:
                log.warning("%s: its jobs wait", reason)
            self.sched.block(kind, name, reason)
        elif (kind, name) in self.sched.blocked:
            log.info("budget: %s %s may start jobs again", kind, name)
            self.sched.unblock(kind, name)

    def check_all(self, now: float) -> None:
        for kind in KINDS:
            for name in self.caps[kind]:
                self.check((kind, name), now)

    def tick(self, now: float) -> bool:
        """A new UTC day or month: caps start over. True if a block was lifted."""
        blocked = len(self.sched.blocked)
        if period_start("month", now).strftime("%Y-%m") != self.month:
            self.reload(now)
        else:
            self.check_all(now)
        return len(self.sched.blocked) < blocked

    def rows(self, now: float) -> list[dict[str, Any]]:
        """Spend against every cap: what `luzia budget` shows."""
        out = []
        for kind in KINDS:
            for name, cap in sorted(self.caps[kind].items()):
                for period in PERIODS:
                    limit = getattr(cap, period)
                    if not limit:
                        continue
                    spent = self.spent_in(kind, name, period, now)
                    out.append({"kind": kind, "name": name, "period": period,
                                "spent": round(spent, 4), "cap": limit,
                                "left": round(max(0.0, limit - spent), 4),
                                "over": spent >= limit,
                                "resets_at": period_end(period, now).timestamp()})
        return out
