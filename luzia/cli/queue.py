"""`luzia queue status|add|flush|locks`: what waits, in which order, clearing it, and the
user locks that hold it (what squeue/scancel give, and the older file-based queue and
per-user dispatchers' `luzia-queue`). Broker ops: queue.status, queue.flush, queue.locks
(docs/PROTOCOL.md); `add` is the submit fast path's.
"""

from __future__ import annotations

import time
from typing import Any

import click

from luzia.cli.control import JSON_HELP, ask, dump
from luzia.cli.render import LEVEL_STYLE, clean, counts, num, seconds, table
from luzia.errors import UsageError

PRIORITIES = click.Choice(["critical", "high", "normal", "low"])


@click.group()
def queue() -> None:
    """The queue: what waits, in which order, clearing it, the user locks."""


@queue.command("status")
@click.option("--verbose", "-v", is_flag=True, help="Also list the pending jobs in the order they would run.")
@click.option("--limit", "-n", default=50, show_default=True, type=click.IntRange(1, 500),
              help="How many pending jobs --verbose lists.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def queue_status(verbose, limit, as_json) -> None:
    """Depth per priority, oldest wait, per-project and per-user counts, rejected count."""
    result = ask("queue.status", dict, verbose=verbose or None, limit=limit)
    dump(result) if as_json else show_status(result)


@queue.command("add", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("argv", nargs=-1, type=click.UNPROCESSED, metavar="PROJECT TASK... [OPTIONS]")
def queue_add(argv) -> None:
    """Queue a job: the same as `luzia PROJECT TASK...` (--priority, --metadata JSON,
    --type, --user, --timeout, --max-retries, --after, --dry-run, --json; `luzia PROJECT
    --help`)."""
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
    dump(result) if as_json else show_flushed(result, dry_run)


@queue.command("locks")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def queue_locks(as_json) -> None:
    """The user locks (one running job per user): each with its job, host, since when, and
    when it goes stale (scheduler.user_lock_stale); stale and released ones too."""
    result = ask("queue.locks", dict)
    dump(result) if as_json else show_locks(result)


def show_locks(result: dict[str, Any]) -> None:
    now = time.time()
    locks = [r for r in result.get("locks") or [] if isinstance(r, dict)]
    stale_after = num(result.get("stale_after")) or 0
    if not result.get("per_user") and not locks:
        click.echo("per-user locks are off (scheduler.per_user = false; no per_user_limits)")
        return
    if not locks:
        click.echo("no user holds a lock: no job of a limited user is running")
        return
    table(("USER", "JOB", "HOST", "PROJECT", "SINCE", "STALE IN", "STATE", "WAITING"),
          [(r.get("user"), r.get("job"), r.get("host") or "-", r.get("project"),
            f"{seconds(now - (num(r.get('since')) or now))} ago", _stale_in(r, now), r.get("state"),
            int(num(r.get("waiting")) or 0)) for r in locks],
          {6: {"held": "green", "stale": "yellow", "released": "red"}})
    click.echo(f"\na lock goes stale after {seconds(stale_after) if stale_after else 'never'}; "
               "its job keeps running, and its user may start another")


def _stale_in(lock: dict[str, Any], now: float) -> str:
    at = num(lock.get("stale_at"))
    if at is None:
        return "never"
    return "stale" if at <= now else seconds(at - now)


def show_status(q: dict[str, Any]) -> None:
    by_priority = q.get("by_priority")
    by_priority = by_priority if isinstance(by_priority, dict) else {}
    print(f"pending     {int(num(q.get('pending')) or 0)}   running {int(num(q.get('running')) or 0)}"
          f"   oldest wait {seconds(q.get('oldest_wait'))}")
    print("by priority " + "  ".join(f"{p} {int(num(by_priority.get(p)) or 0)}"
                                     for p in ("critical", "high", "normal", "low")))
    print(f"by project  {counts(q.get('by_project'))}")
    print(f"by user     {counts(q.get('by_user'))}")
    print(f"rejected    {int(num(q.get('rejected')) or 0)} kept in history, "
          f"{int(num(q.get('rejected_since_start')) or 0)} since the broker started")
    jobs = q.get("jobs")
    if isinstance(jobs, list):
        print("")
        pending_table(jobs) if jobs else print("no pending jobs")


def show_flushed(result: dict[str, Any], dry_run: bool) -> None:
    jobs = [j for j in result.get("jobs") or [] if isinstance(j, dict)]
    if not jobs:
        click.echo("no pending job matches")
        return
    pending_table(jobs)
    count = int(num(result.get("count")) or len(jobs))
    verb = "would remove" if dry_run else "removed"
    click.echo(f"\n{verb} {count} pending job{'s' if count != 1 else ''}"
               + (f" (the first {len(jobs)} shown)" if count > len(jobs) else "")
               + (" (run again without --dry-run to do it)" if dry_run else ""))


def pending_table(jobs: list[dict[str, Any]]) -> None:
    """Pending jobs in the order they would run."""
    now = time.time()
    table(("#", "ID", "PRIO", "PROJECT", "USER", "TYPE", "WAIT", "WHY"),
          [(i + 1, j.get("id"), j.get("priority"), j.get("project"), j.get("user"), j.get("type"),
            seconds(now - (num(j.get("submitted_at")) or now)), clean(j.get("why"), 60))
           for i, j in enumerate(jobs) if isinstance(j, dict)],
          {2: LEVEL_STYLE})


COMMANDS = (queue,)
