"""`luzia import pending-requests FILE` and `luzia import beads PATH`: move the older
file-based dispatchers' queues into the broker — the queue dispatcher's (`luzia-queue`)
pending-requests.json and the async dispatcher's Beads issues, .beads/issues.jsonl.

Idempotent: each item's job id is derived from its source and its own id
(`HHMMSS-<12 hex of sha256>`), and the broker treats a second submission of an id as a
no-op, so a re-import takes nothing twice; `jobs.exist` lets the report say which items an
earlier run took. Every item is reported as taken or skipped, with the reason.
Broker op: jobs.exist (docs/PROTOCOL.md); the jobs go in through the submit path.
"""

from __future__ import annotations

from pathlib import Path

import click

from luzia.cli.beads_follow import Follower
from luzia.cli.control import ask, dump, load_config
from luzia.cli.oldqueues import Item, beads_file, place, read_beads, read_requests
from luzia.cli.render import clean
from luzia.errors import LuziaError, UsageError
from luzia.states import Priority


def take(items: list[Item], default_project: str | None, dry_run: bool) -> dict[str, list]:
    """Queue what is to be taken; {taken: [...], skipped: [...]} for the report."""
    from luzia import client, protocol
    cfg = load_config()
    place(items, cfg.projects, default_project)
    existing = ask("jobs.exist", dict, ids=[i.job_id for i in items if not i.skip])
    report: dict[str, list] = {"taken": [], "skipped": []}
    for item in items:
        if not item.skip and item.job_id in existing:
            item.skip = f"already imported as job {item.job_id} ({clean(existing[item.job_id], 20)})"
        if item.skip:
            report["skipped"].append({"key": item.key, "reason": item.skip})
            continue
        try:
            spec = client.build(item.project, item.task, cfg=cfg, priority=item.priority,
                                type=item.type or None, metadata=item.metadata)
            spec = protocol.replace(spec, id=item.job_id)
        except LuziaError as exc:
            report["skipped"].append({"key": item.key, "reason": str(exc)})
            continue
        if not dry_run:
            client.send(spec, cfg)
        report["taken"].append({"key": item.key, "id": spec.id, "project": spec.project,
                                "priority": Priority(spec.priority).label})
    return report


def show(report: dict[str, list], dry_run: bool, as_json: bool) -> None:
    if as_json:
        dump({"dry_run": dry_run, **report})
        return
    verb = "would take" if dry_run else "took"
    for t in report["taken"]:
        click.echo(f"{verb:10} {clean(t['key'], 40):24} -> {t['id']}  {t['project']}  {t['priority']}")
    for s in report["skipped"]:
        click.echo(f"{'skipped':10} {clean(s['key'], 40):24} {clean(s['reason'], 120)}")
    already = sum(1 for s in report["skipped"] if s["reason"].startswith("already imported"))
    click.echo(f"\n{verb} {len(report['taken'])}, skipped {len(report['skipped'])}"
               f" ({already} already imported)")


@click.group("import")
def import_group() -> None:
    """Move the old dispatchers' queues into Luzia (safe to run again)."""


@import_group.command("pending-requests")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--project", "-p", help="Project for requests that name none (or an unknown one).")
@click.option("--include-review", is_flag=True, help="Also take requests still awaiting review.")
@click.option("--dry-run", "-n", is_flag=True, help="Only report what would be taken.")
@click.option("--json", "as_json", is_flag=True, help="JSON: {dry_run, taken, skipped}.")
def import_requests(file, project, include_review, dry_run, as_json) -> None:
    """The older queue dispatcher's pending-requests.json: approved/ready/pending
    requests become jobs (URGENT words → critical, approved → high); completed ones are
    skipped."""
    show(take(list(read_requests(file, include_review)), project, dry_run), dry_run, as_json)


@import_group.command("beads")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--project", "-p", help="Project the issues belong to (default: the repository's "
              "directory name, if it is a project).")
@click.option("--follow", "-f", is_flag=True,
              help="Keep watching: take new and reopened issues, write each job's state back.")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(0.1, 3600),
              metavar="SECONDS", help="How often --follow reads the file and asks the broker.")
@click.option("--dry-run", "-n", is_flag=True,
              help="Only report what would be taken (with --follow: and written back, once).")
@click.option("--json", "as_json", is_flag=True, help="JSON: {dry_run, taken, skipped}.")
def import_beads(path, project, follow, interval, dry_run, as_json) -> None:
    """The older async dispatcher's Beads issues (.beads/issues.jsonl): open and blocked
    issues become jobs (Beads priority 0-3 → critical..low, labels → task type); closed and
    in-progress ones are skipped.

    With --follow it keeps running (a supervisor program of its own: docs/DEPLOY.md):
    new and reopened issues are taken as they appear, and each issue follows its job —
    in_progress while it runs, closed (with the job and its end) when it completed, left
    open with a note when it failed. Writes are atomic, merged with other writers' under
    a lock on <file>.lock, and keep every other field byte for byte."""
    source = beads_file(path)
    repo = source.parent.parent if source.parent.name == ".beads" else source.parent
    project = project or repo.resolve().name
    if follow:
        if as_json:
            raise UsageError("--follow prints a line per change; --json is for one import")
        Follower(source, project, interval, dry_run).run()
        return
    show(take(list(read_beads(source)), project, dry_run), dry_run, as_json)


COMMANDS = (import_group,)
