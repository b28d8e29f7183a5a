"""The operator's commands: `luzia queue`, `luzia agents`, `luzia history`, `luzia stats`
(seed 002's luzia-queue CLI, and what squeue/sacct/scontrol give). The broker side of each
is in luzia/broker/control_ops.py; every query takes --json."""

from __future__ import annotations

import re
import time
from typing import Any

import click

from luzia.cli import ops_render
from luzia.cli.app import _control, _dump
from luzia.cli.render import clean, num
from luzia.errors import ProtocolError, UsageError

PRIORITIES = click.Choice(["critical", "high", "normal", "low"])
WORST_FIRST = ("dead", "over-ceiling", "draining", "full", "ok")
SORT_KEYS = {"name": lambda a: str(a.get("name")),
             "load": lambda a: -(num(a.get("load")) or 0),
             "jobs": lambda a: -(num(a.get("running")) or 0),
             "health": lambda a: (WORST_FIRST.index(a["health"]) if a.get("health") in WORST_FIRST
                                  else len(WORST_FIRST))}
DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
JSON_HELP = "JSON instead of a table."


def ask(op: str, kind: type, **args: Any) -> Any:
    """One control request whose result must be a `kind` (it came over the network)."""
    with _control() as ctl:
        result = ctl.call(op, **{k: v for k, v in args.items() if v is not None})
    if not isinstance(result, kind):
        raise ProtocolError(f"the broker answered {op} with a malformed result")
    return result


def since_time(value: str | None) -> float | None:
    """`--since`: a duration back from now (90m, 2h, 7d) or a date (2026-01-09[THH:MM])."""
    if not value:
        return None
    found = DURATION.match(value.strip())
    if found:
        return time.time() - float(found[1]) * UNITS[found[2]]
    for fmt in ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            return time.mktime(time.strptime(value.strip(), fmt))
        except ValueError:
            continue
    raise UsageError(f"--since wants a duration like 90m, 2h, 7d or a date like 2026-01-09, "
                     f"not {value!r}")


# ---------------------------------------------------------------------------
# queue


@click.group()
def queue() -> None:
    """The queue: what waits, in which order, and clearing it."""


@queue.command("status")
@click.option("--verbose", "-v", is_flag=True, help="Also list the pending jobs in the order they would run.")
@click.option("--limit", "-n", default=50, show_default=True, type=click.IntRange(1, 500),
              help="How many pending jobs --verbose lists.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def queue_status(verbose, limit, as_json) -> None:
    """Depth per priority, oldest wait, per-project and per-user counts, rejected count."""
    result = ask("queue.status", dict, verbose=verbose or None, limit=limit)
    _dump(result) if as_json else ops_render.queue_status(result)


@queue.command("add", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("argv", nargs=-1, type=click.UNPROCESSED, metavar="PROJECT TASK... [OPTIONS]")
def queue_add(argv) -> None:
    """Queue a job: the same as `luzia PROJECT TASK...` (--priority, --metadata JSON,
    --type, --user, --timeout, --max-retries, --after, --json; `luzia PROJECT --help`)."""
    from luzia.cli.submit import run
    if not argv:
        raise UsageError("say what to queue: luzia queue add PROJECT TASK... [--priority P]")
    code = run(list(argv))
    if code:
        raise click.exceptions.Exit(code)


@queue.command("flush")
@click.option("--dry-run", "-n", is_flag=True, help="Only show what would be removed.")
@click.option("--project", "-p", help="Only this project's jobs.")
@click.option("--user", "-u", help="Only this user's jobs.")
@click.option("--priority", type=PRIORITIES, help="Only jobs of this priority.")
@click.option("--type", "kind", help="Only jobs of this task type.")
@click.option("--all", "everything", is_flag=True, help="Every pending job (no filter).")
@click.option("--json", "as_json", is_flag=True, help="JSON: {dry_run, jobs}.")
def queue_flush(dry_run, project, user, priority, kind, everything, as_json) -> None:
    """Remove pending jobs matching the filters (they end as killed), listed in the order
    they would have run. Without a filter, --all is needed."""
    if not (project or user or priority or kind or everything):
        raise UsageError("say which pending jobs to flush: --project, --user, --priority, "
                         "--type, or --all (add --dry-run to see them first)")
    result = ask("queue.flush", dict, project=project, user=user, priority=priority, type=kind,
                 dry_run=dry_run or None)
    if as_json:
        _dump(result)
        return
    jobs = [j for j in result.get("jobs") or [] if isinstance(j, dict)]
    if not jobs:
        click.echo("no pending job matches")
        return
    ops_render.pending_table(jobs)
    count = int(num(result.get("count")) or len(jobs))
    verb = "would remove" if dry_run else "removed"
    click.echo(f"\n{verb} {count} pending job{'s' if count != 1 else ''}"
               + (f" (the first {len(jobs)} shown)" if count > len(jobs) else "")
               + (" (run again without --dry-run to do it)" if dry_run else ""))


# ---------------------------------------------------------------------------
# agents


@click.group()
def agents() -> None:
    """The agents: load, health, where work goes, draining."""


@agents.command("status")
@click.option("--sort-by", type=click.Choice(sorted(SORT_KEYS)), default="name", show_default=True,
              help="Order (load and jobs: highest first; health: worst first).")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def agents_status(sort_by, as_json) -> None:
    """Each agent's slots in use, load score and its parts, capabilities, GPU, last
    heartbeat and health (ok, full, draining, over-ceiling, dead)."""
    found = [a for a in ask("agents.status", list) if isinstance(a, dict)]
    found.sort(key=SORT_KEYS[sort_by])
    _dump(found) if as_json else ops_render.agents_status(found)


@agents.command("allocate")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def agents_allocate(as_json) -> None:
    """Where the next job of each type would go and why, and auto-scaling advice."""
    result = ask("agents.allocate", dict)
    _dump(result) if as_json else ops_render.allocate(result)


@agents.command("drain")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="JSON: the agent.")
def agents_drain(name, as_json) -> None:
    """Let NAME finish its running jobs and give it no new ones."""
    _drain(name, as_json, True)


@agents.command("undrain")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="JSON: the agent.")
def agents_undrain(name, as_json) -> None:
    """Let NAME take new jobs again."""
    _drain(name, as_json, False)


def _drain(name: str, as_json: bool, draining: bool) -> None:
    result = ask("agents.drain" if draining else "agents.undrain", dict, name=name)
    if as_json:
        _dump(result)
        return
    who = clean(result.get("name"))
    if draining:
        click.echo(f"{who}: draining, {int(num(result.get('running')) or 0)} jobs still running "
                   f"(undo with: luzia agents undrain {who})")
    else:
        click.echo(f"{who}: taking jobs again (health {clean(result.get('health'))})")


# ---------------------------------------------------------------------------
# accounting


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
    _dump(found) if as_json else ops_render.history(found)


@click.command()
@click.option("--user", "-u", help="Only this user's jobs.")
@click.option("--project", "-p", help="Only this project's jobs.")
@click.option("--since", metavar="WHEN", help="Finished since: 90m, 2h, 7d or 2026-01-09.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def stats(user, project, since, as_json) -> None:
    """Per user and per project: jobs, completed, failed, run time, mean wait and run."""
    result = ask("stats", dict, user=user, project=project, since=since_time(since))
    _dump(result) if as_json else ops_render.stats(result)


COMMANDS = (queue, agents, history, stats)
