"""`luzia db check|backup FILE|recover`: the broker's job database, on the broker's host.

These work on the file itself (`broker.db`, by default $LUZIA_HOME/luzia.db), not through
the broker: the one CLI command that uses broker modules, because it is the broker's file.
`check` and `backup` only read it and are safe while the broker runs; `recover` replaces
it, so it takes the broker's lock and refuses while a broker holds it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from luzia.cli.control import load_config
from luzia.errors import InUse, StoreError, UsageError


def _show(rows: list[tuple[str, str]]) -> None:
    for label, value in rows:
        click.echo(f"{label:10} {value}" if label else f"{'':10} {value}")


def _bytes(n: int) -> str:
    return f"{n:,} bytes"


@click.group()
def db() -> None:
    """The broker's job database, on the broker's host: check, back up, recover."""


@db.command()
@click.option("--quick", is_flag=True,
              help="SQLite's quick_check (what the broker runs at start) instead of the full "
                   "integrity_check.")
@click.option("--json", "as_json", is_flag=True,
              help="JSON: {path, bytes, schema, latest, verdict, integrity, jobs, attempts, "
                   "events, bad_rows, drained, copies, ok, advice, ...}.")
def check(quick: bool, as_json: bool) -> None:
    """Schema version (and what this release does with it), integrity, contents.

    Read-only: safe while the broker runs. Exit 73 when the database is damaged, from a
    newer release, unreadable or missing (the advice line says what to do)."""
    from luzia.broker import dbfile
    report = dbfile.check(load_config().broker.db, full=not quick)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _show(_check_rows(report))
    if not report["ok"]:
        raise StoreError(f"{report['path']}: {report['advice']}")


def _check_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    from luzia import __version__
    size = f"{_bytes(r['bytes'])} (WAL {_bytes(r['wal_bytes'])})" if r["bytes"] else "missing or empty"
    rows = [("database", f"{r['path']}  {size}")]
    if r["schema"] is not None:
        rows.append(("schema", f"{r['schema']} (this release, {__version__}, uses "
                               f"{r['latest']}: {VERDICTS.get(r['verdict'], r['verdict'])})"))
    if r["verdict"] != "missing":
        rows.append(("integrity", f"{r['integrity']} ({r['check']}, {r['seconds']:.2f}s)"))
    jobs = r.get("jobs")
    if isinstance(jobs, dict):
        by_state = ", ".join(f"{s} {n}" for s, n in sorted(jobs.items()))
        rows.append(("jobs", f"{sum(jobs.values())}" + (f": {by_state}" if by_state else "")))
    elif jobs is not None:
        rows.append(("jobs", str(jobs)))
    for name in ("attempts", "events"):
        if name in r:
            rows.append((name, str(r[name])))
    bad = r.get("bad_rows")
    if isinstance(bad, list) and bad:
        rows += [("bad rows" if i == 0 else "", f"job {b['id']}: {b['why']}") for i, b in enumerate(bad)]
    if r.get("drained"):
        drained = r["drained"]
        rows.append(("drained", drained if isinstance(drained, str) else ", ".join(drained)))
    notes = r.get("notes") or {}
    if "rebuild" in notes:
        rows.append(("rebuild", f"asked for: the database {notes['rebuild'].get('why')}; the "
                                "broker rebuilds unfinished jobs from job directories at start"))
    if "rebuilt" in notes:
        done = notes["rebuilt"]
        rows.append(("rebuilt", f"{done.get('jobs')} unfinished jobs from job directories on "
                                f"{done.get('at')} (the database {done.get('why')})"))
    if r.get("failed"):
        rows.append(("failed", f"the broker stopped on a database error: {r['failed']}"))
    rows += [("copies" if i == 0 else "", f"{c['path']} ({_bytes(c['bytes'])})")
             for i, c in enumerate(r["copies"])]
    return rows


VERDICTS = {"current": "current", "newer": "from a newer release: refused",
            "migrate": "the broker migrates it at its next start, after a copy beside it"}


@db.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@click.option("--json", "as_json", is_flag=True,
              help="JSON: {source, backup, schema, jobs, bytes, integrity, seconds}.")
def backup(file: str, force: bool, as_json: bool) -> None:
    """Copy the job database to FILE with SQLite's backup API.

    A consistent snapshot, safe while the broker runs and commits. FILE is one
    self-contained SQLite file (mode 0600), written under a temporary name and renamed.
    To restore it: stop the broker, put it in place of luzia.db (moving luzia.db-wal and
    luzia.db-shm away too), start the broker."""
    from luzia.broker import dbfile
    source = load_config().broker.db
    if os.path.exists(file) and os.path.exists(source) and os.path.samefile(file, source):
        raise UsageError(f"{file} is the job database itself; name another file")
    if os.path.exists(file) and not force:
        raise UsageError(f"{file} exists; give --force to replace it")
    report = dbfile.backup(source, file)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(f"backed up {report['source']} (schema {report['schema']}, {report['jobs']} "
                   f"jobs) to {report['backup']}: {_bytes(report['bytes'])} in "
                   f"{report['seconds']:.2f}s; the copy's quick_check: {report['integrity']}")
    if report["integrity"] != "ok":
        raise StoreError(f"the copy is as damaged as {source} ({report['integrity']}): see "
                         "`luzia db check`, then `luzia db recover` with the broker stopped")


@db.command()
@click.option("--force", is_flag=True, help="Salvage even a database that checks whole.")
@click.option("--dry-run", "-n", is_flag=True,
              help="Only say whether it would salvage, and how; change nothing (read-only).")
@click.option("--json", "as_json", is_flag=True,
              help="JSON: {path, set_aside, method, tried, schema, before, recovered, "
                   "repaired, integrity, seconds}; method null: nothing to recover.")
def recover(force: bool, dry_run: bool, as_json: bool) -> None:
    """Salvage what can be read of a damaged job database into a new one (broker stopped).

    The damaged file (and its -wal) is kept aside as luzia.db.damaged-<time>, unchanged.
    The salvage uses SQLite's .recover (the sqlite3 tool) where it works, else the backup
    API, else copies row by row; it says which, and what it got back. At its next start
    the broker rebuilds the unfinished jobs the salvage lost from their job directories.
    A database that checks whole is left alone (--force salvages it anyway). Refused
    (exit 75) while the broker runs."""
    from luzia.broker import lock, salvage
    cfg = load_config()
    try:
        held = lock.hold(Path(cfg.home), holder="(luzia db recover)")
    except InUse as exc:
        raise InUse(f"the broker (pid {exc.holder}) is running on {cfg.home}: "
                    "stop it first (`luzia supervisor stop broker`, or stop the service), then "
                    "run `luzia db recover` again") from None
    try:
        if dry_run:
            _would_recover(cfg.broker.db, force)
            return
        report = salvage.recover(cfg.broker.db, force=force)
    finally:
        os.close(held)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    elif report["method"] is None:
        click.echo(f"nothing to recover: {report['path']} passes integrity_check and every job "
                   "row reads back (--force salvages it anyway)")
    else:
        _show(_recover_rows(report))


def _would_recover(path: str, force: bool) -> None:
    """--dry-run: what `recover` would do, from the read-only checks it starts with."""
    from luzia.broker import dbfile
    found = dbfile.probe(path)
    if found.empty and not found.unreadable:
        click.echo(f"nothing to recover: no job database at {path} (dry run)")
    elif not force and not found.empty and dbfile.check(path)["ok"]:
        click.echo(f"nothing to recover: {path} checks whole (dry run; --force would salvage it)")
    else:
        click.echo(f"would set {path} (and its -wal) aside as {os.path.basename(path)}.damaged-"
                   "<time>, salvage it into a new file there (sqlite3 .recover, else the backup "
                   "API, else row by row); dry run: nothing was changed")


def _recover_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    got = ", ".join(f"{t} {n} of {'?' if r['before'].get(t) is None else r['before'][t]}"
                    for t, n in r["recovered"].items())
    rows = [("set aside", ", ".join(r["set_aside"])), ("method", r["method"])]
    rows += [("", f"(tried first: {t})") for t in r["tried"]]
    rows.append(("recovered", f"{got}; {r['repaired']} damaged values repaired"))
    rows.append(("new", f"{r['path']}: schema {r['schema']}, integrity {r['integrity']} "
                        f"({r['seconds']:.2f}s)"))
    rows.append(("next", "start the broker: it rebuilds the unfinished jobs the salvage lost "
                         "from their job directories"))
    return rows


COMMANDS = (db,)
