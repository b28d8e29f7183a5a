"""Budgets and usage limits: what `luzia budget` asks the broker (docs/AGENTS.md)."""

from __future__ import annotations

import time
from typing import Any

from luzia.broker.model import Model
from luzia.broker.ops.request import Args
from luzia.states import JobState


def status(m: Model, args: Args) -> dict[str, Any]:
    """budget {} → {budgets: [{kind, name, period, spent, cap, left, over, resets_at}],
    accounts: [{account, until, line, agents}], paused: [{id, user, project, until,
    pauses}]}: spend in USD against each cap (UTC day and month), the accounts marked
    limited fleet-wide until their reset, and the jobs paused on a usage limit."""
    now = time.time()
    paused = [{"id": j.id, "user": j.user, "project": j.project, "until": j.paused_until,
               "pauses": j.pauses}
              for j in sorted(m.jobs.values(), key=lambda j: j.paused_until or 0)
              if j.state is JobState.PAUSED]
    return {"budgets": m.budgets.rows(now), "accounts": m.accounts.rows(), "paused": paused}


OPS = {"budget": status}
