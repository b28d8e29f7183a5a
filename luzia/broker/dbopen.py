"""Opening the job database for the broker (store.Store): a damaged database, or one from a
newer release, is refused before anything writes it; an older one is copied beside itself,
then migrated in one transaction (luzia/broker/migrations.py says how versions work and how
to add a migration); a missing one is created by the same migrations.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import dataclass

from luzia.broker import dbfile, migrations
from luzia.errors import StoreError

log = logging.getLogger(__name__)

# The start's integrity check gives up after this long (a very large database, a cold
# cache): the supervisor counts a broker silent for start_grace + ping_timeout as hung.
START_CHECK_BUDGET = 8.0

@dataclass
class Opened:
    """What opening the database found and did."""

    created: bool = False          # there was no database (missing or empty file): a new one
    existed: bool = False          # a file was there (zero-length, when created)
    from_version: int = 0
    backup: str | None = None      # the copy kept before migrating


def open_db(path: str) -> tuple[sqlite3.Connection, Opened]:
    """Open the job database for the broker. A damaged database, or one from a newer release,
    is refused before anything writes it (StoreError: one line, exit 73); an older one is
    copied beside itself, then migrated in one transaction; a missing one is created."""
    failed = dbfile.failed_mark(path)       # the broker stopped on a database error last time
    found = dbfile.probe(path, full=bool(failed), budget=START_CHECK_BUDGET)
    dbfile.refuse(path, found)
    if not found.checked:
        log.warning("job database %s (%.0f MB): the %s check did not finish in %.0fs; the "
                    "broker starts without it. `luzia db check` checks it in full", path,
                    found.size / 1e6, "full" if failed else "quick", START_CHECK_BUDGET)
    opened = Opened(created=found.empty, existed=found.exists, from_version=found.version)
    try:
        if 0 < found.version < migrations.LATEST:
            opened.backup = dbfile.backup_beside(path, found.version)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before the broker acts on it (acknowledged = durable)
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=5000")
        if found.version < migrations.LATEST:
            _migrate(db, path, opened)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open job database {path}: {dbfile.one_line(str(exc))}") from None
    if failed and found.checked:
        log.warning("job database %s: full integrity check after the last failure (%s): ok",
                    path, failed)
        dbfile.clear_failed(path)
    return db, opened


def _migrate(db: sqlite3.Connection, path: str, opened: Opened) -> None:
    """All the migrations due, in one transaction (taken before the version is read again)."""
    started = time.monotonic()
    db.execute("BEGIN IMMEDIATE")
    try:
        current = migrations.version_of(db)
        migrations.upgrade(db, current)
        db.execute("COMMIT")
    except Exception as exc:      # a migration step of any kind: one line, nothing changed
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass                 # SQLite rolled it back itself (disk full, I/O error)
        kept = f"; the copy from before: {opened.backup}" if opened.backup else ""
        raise StoreError(f"migrating job database {path} from schema {opened.from_version} to "
                         f"{migrations.LATEST} failed, nothing changed: {type(exc).__name__}: "
                         f"{dbfile.one_line(str(exc))}{kept}") from None
    name = os.path.basename(path)
    if current == 0:        # a first start: not news (a lost database is: rebuild.py)
        log.debug("created %s (schema %d) at %s", name, migrations.LATEST, path)
        return
    log.info("migrated %s from schema %d to %d in %.2fs; the copy from before: %s", name,
             current, migrations.LATEST, time.monotonic() - started, opened.backup)
