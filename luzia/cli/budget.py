"""`luzia budget`: spend against each budget, the accounts limited by a usage limit and the
jobs paused until a reset; and how cost and tokens read in every view (docs/AGENTS.md).
Broker op: budget (docs/PROTOCOL.md)."""

from __future__ import annotations

import time
from typing import Any

import click

from luzia.cli.control import JSON_HELP, ask, dump
from luzia.cli.render import age, clean, num, stamp, table


@click.command()
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def budget(as_json) -> None:
    """Spend (USD) against each [budgets] cap, per UTC day and month; the accounts a usage
    limit holds until their reset; the jobs paused until then."""
    found = ask("budget", dict)
    dump(found) if as_json else show_budget(found)


def show_budget(found: dict[str, Any], now: float | None = None) -> None:
    now = time.time() if now is None else now
    rows = [r for r in found.get("budgets") or [] if isinstance(r, dict)]
    if rows:
        table(("KIND", "NAME", "PERIOD", "SPENT", "CAP", "LEFT", "RESETS"),
              [(r.get("kind"), r.get("name"), r.get("period"), money(r.get("spent")),
                money(r.get("cap")), "over" if r.get("over") else money(r.get("left")),
                stamp(r.get("resets_at"))) for r in rows])
    else:
        print("no budgets ([budgets.users.NAME] / [budgets.projects.NAME] day = , month = )")
    accounts = [a for a in found.get("accounts") or [] if isinstance(a, dict)]
    print("")
    if accounts:
        table(("ACCOUNT", "LIMITED UNTIL", "IN", "AGENTS", "SEEN"),
              [(a.get("account"), stamp(a.get("until")), until_in(a.get("until"), now),
                ", ".join(clean(n) for n in a.get("agents") or []) or "-",
                clean(a.get("line"), 60)) for a in accounts])
    else:
        print("no account is limited")
    paused = [p for p in found.get("paused") or [] if isinstance(p, dict)]
    if paused:
        print("")
        table(("PAUSED JOB", "USER", "PROJECT", "RESUMES", "IN", "PAUSES"),
              [(p.get("id"), p.get("user"), p.get("project"), stamp(p.get("until")),
                until_in(p.get("until"), now), int(num(p.get("pauses")) or 0)) for p in paused])


def money(value: Any) -> str:
    """`$1.23`; `-` when unknown (no cost reported)."""
    value = num(value)
    if value is None:
        return "-"
    return f"${value:.4f}" if 0 < value < 0.01 else f"${value:.2f}"


def until_in(value: Any, now: float) -> str:
    until = num(value)
    return "-" if until is None else age(max(0.0, until - now))


def tokens(value: Any) -> str:
    """12345 → `12.3k`."""
    n = int(num(value) or 0)
    return f"{n / 1e6:.1f}M" if n >= 10**6 else f"{n / 1e3:.1f}k" if n >= 1000 else str(n)


def cost_cell(job: dict[str, Any]) -> str:
    """A job's COST column: its USD, `-` while no attempt reported one."""
    return money(job.get("cost_usd"))


def usage_lines(job: dict[str, Any], now: float | None = None) -> list[str]:
    """The detail view's lines on the agent's usage, session and pause (none when unknown)."""
    now = time.time() if now is None else now
    lines = []
    used = any(num(job.get(k)) for k in ("tokens_in", "tokens_out", "turns"))
    if job.get("cost_usd") is not None or used:
        cost = money(job.get("cost_usd")) if job.get("cost_usd") is not None \
            else "no cost reported"
        lines.append(f"cost       {cost}   tokens in {tokens(job.get('tokens_in'))} out "
                     f"{tokens(job.get('tokens_out'))} cache {tokens(job.get('cache_read'))}"
                     f"/{tokens(job.get('cache_write'))}   turns "
                     f"{int(num(job.get('turns')) or 0)}"
                     + (f"   model {clean(job.get('model'), 40)}" if job.get("model") else ""))
    if job.get("session_id") or job.get("account"):
        resume = "resumes it next" if job.get("resume") else ""
        lines.append(f"session    {clean(job.get('session_id'), 80) or '-'}"
                     + (f"   account {clean(job.get('account'), 64)}" if job.get("account") else "")
                     + (f"   ({resume})" if resume else ""))
    if clean(job.get("state")) == "paused":
        lines.append(f"paused     until {stamp(job.get('paused_until'))} (in "
                     f"{until_in(job.get('paused_until'), now)}), pause "
                     f"{int(num(job.get('pauses')) or 0)}; `luzia retry` resumes it now")
    return lines


def attempt_cost(attempt: dict[str, Any]) -> str:
    """` $0.12 5.1k/0.3k tok` for an attempt that reported usage, else ""."""
    parts = []
    if attempt.get("cost_usd") is not None:
        parts.append(money(attempt.get("cost_usd")))
    if num(attempt.get("tokens_in")) or num(attempt.get("tokens_out")):
        parts.append(f"{tokens(attempt.get('tokens_in'))}/{tokens(attempt.get('tokens_out'))} tok")
    return ("  " + " ".join(parts)) if parts else ""


COMMANDS = (budget,)
