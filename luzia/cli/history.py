"""`luzia history` and `luzia stats`: the accounting of finished jobs (what sacct and
sreport give). Broker ops: history, stats (docs/PROTOCOL.md).
"""

from __future__ import annotations

import re
import time
from typing import Any

import click

from luzia.cli.budget import money, tokens
from luzia.cli.control import JSON_HELP, ask, dump
from luzia.cli.render import STATE_STYLE, clean, num, seconds, stamp, table
from luzia.errors import UsageError

DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
USAGE_HEAD = ("COST", "TOKENS IN", "TOKENS OUT")    # the agents' (docs/AGENTS.md)
STATS_HEAD = ("JOBS", "COMPLETED", "FAILED", "KILLED", "REJECTED", "RUN TIME", "MEAN WAIT", "MEAN RUN",
              *USAGE_HEAD)
AGENT_HEAD = ("JOBS", "ATTEMPTS", "COMPLETED", "FAILED", "RUN TIME", "MEAN RUN", *USAGE_HEAD)
GROUPS = ("user", "submitter", "project", "agent")
DEFAULT_GROUPS = ("user", "submitter", "project")


def since_time(value: str | None) -> float | None:
    """`--since`: a duration back from now (90m, 2h, 7d) or a date (2026-01-09[THH:MM])."""
    if not value:
        return None
    found = DURATION.fullmatch(value.strip())
    if found:
        return time.time() - float(found[1]) * UNITS[found[2]]
    for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            return time.mktime(time.strptime(value.strip(), fmt))
        except ValueError:
            continue
    raise UsageError(f"--since wants a duration like 90m, 2h, 7d or a date like 2026-01-09, "
                     f"not {value!r}")


@click.command()
@click.option("--user", "-u", help="Only this user's jobs.")
@click.option("--project", "-p", help="Only this project's jobs.")
@click.option("--since", metavar="WHEN", help="Submitted since: 90m, 2h, 7d or 2026-01-09.")
@click.option("--limit", "-n", default=50, show_default=True, type=click.IntRange(1, 500),
              help="How many jobs.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def history(user, project, since, limit, as_json) -> None:
    """Finished jobs, newest first, with their wait and run times (like sacct)."""
    found = ask("history", list, user=user, project=project, since=since_time(since), limit=limit)
    dump(found) if as_json else show_history(found)


@click.command()
@click.option("--user", "-u", help="Only this user's jobs.")
@click.option("--project", "-p", help="Only this project's jobs.")
@click.option("--since", metavar="WHEN", help="Finished since: 90m, 2h, 7d or 2026-01-09.")
@click.option("--by", "groups", multiple=True, type=click.Choice(GROUPS),
              help="Which tables (repeatable; default: user, submitter and project).")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def stats(user, project, since, groups, as_json) -> None:
    """Per user, submitter and project: jobs, completed, failed, run time, mean wait and run,
    and the agents' cost and tokens; --by agent: per host, the attempts that ran there (a
    job retried elsewhere counts on each), completed, failed, run time, cost and tokens."""
    result = ask("stats", dict, user=user, project=project, since=since_time(since))
    dump(result) if as_json else show_stats(result, groups or DEFAULT_GROUPS)


def show_history(jobs: list[dict[str, Any]]) -> None:
    if not jobs:
        print("no finished jobs match")
        return
    table(("ID", "STATE", "PROJECT", "USER", "BY", "PRIO", "HOST", "FINISHED", "WAIT", "RUN",
           "COST", "REASON"),
          [(j.get("id"), j.get("state"), j.get("project"), j.get("user"),
            j.get("submitter") or "-", j.get("priority"),
            j.get("host") or "-", stamp(j.get("finished_at")), seconds(j.get("wait")),
            seconds(j.get("run")), money(j.get("cost_usd")), clean(j.get("reason"), 40))
           for j in jobs if isinstance(j, dict)],
          {1: STATE_STYLE})


def show_stats(result: dict[str, Any], groups: tuple[str, ...] = DEFAULT_GROUPS) -> None:
    for group in GROUPS:
        if group not in groups:
            continue
        rows = [r for r in result.get(f"by_{group}") or [] if isinstance(r, dict)]
        if group == "agent":
            table(("AGENT", *AGENT_HEAD), [(r.get("name"), *_agent_cells(r)) for r in rows])
        else:
            table((group.upper(), *STATS_HEAD), [(r.get("name"), *_cells(r)) for r in rows])
        print("")
    total = result.get("total")
    total = total if isinstance(total, dict) else {}
    table(("ALL", *STATS_HEAD), [("all", *_cells(total))])


def _agent_cells(row: dict[str, Any]) -> tuple[Any, ...]:
    """One agent's figures (over the attempts that ended on it)."""
    return (int(num(row.get("jobs")) or 0), int(num(row.get("attempts")) or 0),
            int(num(row.get("completed")) or 0), int(num(row.get("failed")) or 0),
            seconds(row.get("run_seconds")), seconds(row.get("mean_run")), *_usage_cells(row))


def _cells(row: dict[str, Any]) -> tuple[Any, ...]:
    """One user's, project's or the total's figures."""
    return (int(num(row.get("jobs")) or 0), int(num(row.get("completed")) or 0),
            int(num(row.get("failed")) or 0), int(num(row.get("killed")) or 0),
            int(num(row.get("rejected")) or 0), seconds(row.get("run_seconds")),
            seconds(row.get("mean_wait")), seconds(row.get("mean_run")), *_usage_cells(row))


def _usage_cells(row: dict[str, Any]) -> tuple[str, ...]:
    """The agents' cost and tokens in a row (USAGE_HEAD)."""
    return money(row.get("cost_usd")), tokens(row.get("tokens_in")), tokens(row.get("tokens_out"))


COMMANDS = (history, stats)
