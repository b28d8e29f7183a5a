"""Salvaging a damaged job database: `luzia db recover`, with the broker stopped.

The damaged file (with its -wal, -shm or -journal) is set aside, unchanged, as
`luzia.db.damaged-<time>`; what can be read of it goes into a new luzia.db, by the first
of these that gives a whole database:

1. SQLite's `.recover`, through the sqlite3 command-line tool when it is there (some
   builds lack the sqlite_dbpage table it needs, and say so);
2. the backup API, when the copy passes the full integrity check (damage that only the
   WAL index or a stale journal held);
3. row by row: the tables made afresh at the file's schema version, then every row that
   can still be read, table by table, stepping over the pages that cannot.

Then job rows that would not read back are repaired (text made UTF-8, unreadable JSON
reset, an unknown state made `failed`), and the broker is asked (the meta row `rebuild`)
to rebuild at its next start the unfinished jobs the salvage lost, from their job
directories (luzia/broker/rebuild.py).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

from luzia.broker import dbfile, migrations
from luzia.errors import StoreError
from luzia.places import fsync_path
from luzia.states import JOB_STATE_NAMES

SIDE_FILES = ("", "-wal", "-shm", "-journal")
CLI_TIMEOUT = 3600.0
FAILED_STATE_REASON = "recovered by `luzia db recover`: its state was unreadable"


class CannotSalvage(Exception):
    """One way of salvaging did not give a whole database; the next is tried."""


def recover(path: str, force: bool = False) -> dict[str, Any]:
    """Salvage `path` into a new file at the same path; the damaged one is kept aside. A
    whole database is left alone unless `force` (method None). The caller holds the broker
    lock (luzia.broker.lock)."""
    started = time.monotonic()
    found = dbfile.probe(path)
    if not force and not found.empty and dbfile.check(path)["ok"]:
        return {"path": path, "set_aside": [], "method": None, "tried": [],
                "schema": found.version, "integrity": "ok",
                "seconds": round(time.monotonic() - started, 3)}
    if found.empty and not found.unreadable:
        raise StoreError(f"no job database at {path} (or an empty one): nothing to recover; "
                         "the broker makes a new one at its next start")
    if found.version > migrations.LATEST:
        raise StoreError(f"{path} is schema {found.version}, from a newer Luzia release: "
                         "recover it with that release")
    aside = _set_aside(path)
    new = f"{path}.recovering"
    try:
        version = found.version or _version_from_meta(aside) or migrations.LATEST
        method, tried, repaired = _salvage(aside, new, version)
        repaired += _repair(new, os.path.basename(aside))
        before, after = _counts(aside), _counts(new)
        fsync_path(new)
        os.replace(new, path)
    except BaseException:
        dbfile._remove(*(new + s for s in SIDE_FILES))
        _put_back(aside, path)
        raise
    fsync_path(os.path.dirname(os.path.abspath(path)))
    dbfile.clear_failed(path)
    return {"path": path, "set_aside": [aside + s for s in SIDE_FILES if os.path.exists(aside + s)],
            "method": method, "tried": tried, "schema": version, "before": before,
            "recovered": after, "repaired": repaired, "integrity": "ok",
            "seconds": round(time.monotonic() - started, 3)}


# the three ways ----------------------------------------------------------------------------
def _salvage(src: str, new: str, version: int) -> tuple[str, list[str], int]:
    """(the way that worked, why the ones before did not, values it had to repair)."""
    tried: list[str] = []
    ways: tuple[tuple[str, Callable[[str, str, int], int]], ...] = (
        ("sqlite3 .recover", _with_sqlite3_tool), ("backup API", _with_backup_api),
        ("row by row", _row_by_row))
    for name, way in ways:
        dbfile._remove(*(new + s for s in SIDE_FILES))
        try:
            repaired = way(src, new, version)
            _whole(new, strict=name == "backup API")
            return name, tried, repaired
        except CannotSalvage as exc:
            tried.append(f"{name}: {exc}")
        except sqlite3.DatabaseError as exc:
            tried.append(f"{name}: {dbfile.one_line(str(exc))}")
    raise StoreError(f"nothing could be salvaged from {src}: {'; '.join(tried)}")


def _with_sqlite3_tool(src: str, new: str, version: int) -> int:
    tool = shutil.which("sqlite3")
    if tool is None:
        raise CannotSalvage("no sqlite3 command-line tool on PATH")
    dump = subprocess.run([tool, "-readonly", src, ".recover"], capture_output=True,
                          timeout=CLI_TIMEOUT)
    said = dump.stderr.decode(errors="replace").strip()
    if dump.returncode or "error" in said.lower():
        raise CannotSalvage("failed: " + dbfile.one_line(said or f"exit {dump.returncode}", 160))
    load = subprocess.run([tool, new], input=dump.stdout, capture_output=True, timeout=CLI_TIMEOUT)
    if load.returncode:
        raise CannotSalvage(dbfile.one_line(load.stderr.decode(errors="replace"), 160))
    return 0


def _with_backup_api(src: str, new: str, version: int) -> int:
    source = dbfile.connect_ro(src)
    try:
        copy = sqlite3.connect(new, isolation_level=None)
        try:
            source.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")
        finally:
            copy.close()
    finally:
        source.close()
    return 0


def _row_by_row(src: str, new: str, version: int) -> int:
    dest = sqlite3.connect(new, isolation_level=None)
    repaired = 0

    def text(value: bytes) -> str:       # a damaged text is kept, made UTF-8
        nonlocal repaired
        try:
            return value.decode()
        except UnicodeDecodeError:
            repaired += 1
            return value.decode(errors="replace")
    try:
        dest.execute("BEGIN")
        migrations.upgrade(dest, 0, version)
        source = dbfile.connect_ro(src)
        source.text_factory = text
        try:
            for table in migrations.TABLES:
                cols = [c for c in _columns(dest, table) if c in _columns(source, table)]
                if not cols:
                    continue
                sql = (f"INSERT OR IGNORE INTO {table} ({', '.join(cols)}) "
                       f"VALUES ({', '.join('?' * len(cols))})")
                for row in _readable_rows(source, table, cols):
                    dest.execute(sql, row)
        finally:
            source.close()
        dest.execute("COMMIT")
    finally:
        dest.close()
    return repaired


def _readable_rows(db: sqlite3.Connection, table: str, cols: list[str]) -> Iterator[tuple]:
    """Every row of `table` that can be read, in rowid order, stepping over damaged pages."""
    select = f"SELECT rowid, {', '.join(cols)} FROM {table} NOT INDEXED"
    last: int | None = None
    while True:
        try:
            rows = db.execute(select + (" WHERE rowid > ?" if last is not None else "")
                              + " ORDER BY rowid", () if last is None else (last,))
            for row in rows:
                last = row[0]
                yield row[1:]
            return
        except sqlite3.DatabaseError:
            last = _next_readable(db, select, last)
            if last is None:
                return


def _next_readable(db: sqlite3.Connection, select: str, last: int | None) -> int | None:
    """The rowid just below the first whole row after `last`, probing ever further; None
    when nothing after it can be read."""
    base, step = (last if last is not None else 0), 1
    while step < 2 ** 62:
        try:
            row = db.execute(select + " WHERE rowid >= ? ORDER BY rowid LIMIT 1",
                             (base + step,)).fetchone()
        except sqlite3.DatabaseError:
            step *= 2
            continue
        return None if row is None else row[0] - 1
    return None


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    try:
        return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
    except sqlite3.DatabaseError:
        return []


# after the salvage ---------------------------------------------------------------------------
def _whole(new: str, strict: bool) -> None:
    """The salvaged file must pass the full integrity check (the backup API's copy, being
    page for page, must also read back every job row)."""
    db = sqlite3.connect(new, isolation_level=None)
    try:
        damage = dbfile.integrity(db, full=True)
        if not damage and strict and dbfile.bad_job_rows(db, limit=1):
            damage = "job rows that do not read back"
    finally:
        db.close()
    if damage:
        raise CannotSalvage(f"the result is damaged too ({damage})")


def _repair(new: str, source_name: str) -> int:
    """Make every job row read back; ask the broker to rebuild what is missing. How many
    values were repaired."""
    db = sqlite3.connect(new, isolation_level=None)
    try:
        text = [r[1] for r in db.execute("PRAGMA table_info(jobs)") if r[2].upper() == "TEXT"]
        db.text_factory = bytes
        rows = ((rowid, dict(zip(text, values, strict=True))) for rowid, *values in
                db.execute(f"SELECT rowid, {', '.join(text)} FROM jobs"))
        bad = [(rowid, row) for rowid, row in rows if dbfile.row_problem(row)]
        db.text_factory = str
        db.execute("BEGIN")
        for rowid, row in bad:
            fixed = _fixed(row)
            db.execute(f"UPDATE jobs SET {', '.join(f'{k}=?' for k in fixed)} WHERE rowid=?",
                       (*fixed.values(), rowid))
        db.execute("INSERT OR REPLACE INTO meta VALUES ('rebuild', ?)", (json.dumps(
            {"why": f"was recovered by `luzia db recover` from {source_name}"}),))
        db.execute("COMMIT")
    finally:
        db.close()
    return len(bad)


def _fixed(row: dict[str, Any]) -> dict[str, Any]:
    fixed = {k: v.decode(errors="replace") if isinstance(v, bytes) else v for k, v in row.items()}
    for name, kind in dbfile.JSON_COLUMNS.items():
        try:
            ok = isinstance(json.loads(fixed.get(name) or "null"), kind)
        except ValueError:
            ok = False
        if not ok:
            fixed[name] = json.dumps(kind())
    if fixed.get("state") not in JOB_STATE_NAMES:
        fixed["state"], fixed["reason"] = "failed", FAILED_STATE_REASON
    return fixed


def _counts(path: str) -> dict[str, int | None]:
    """Rows per table, read without indexes; None where they cannot be counted."""
    out: dict[str, int | None] = {}
    db = dbfile.connect_ro(path)
    try:
        for table in ("jobs", "attempts", "events"):
            try:
                out[table] = db.execute(f"SELECT COUNT(*) FROM {table} NOT INDEXED").fetchone()[0]
            except sqlite3.DatabaseError:
                out[table] = None
    finally:
        db.close()
    return out


def _version_from_meta(path: str) -> int:
    try:
        db = dbfile.connect_ro(path)
        try:
            return migrations.version_of(db)
        finally:
            db.close()
    except (sqlite3.DatabaseError, migrations.NotLuzia):
        return 0


# the files --------------------------------------------------------------------------------
def _set_aside(path: str) -> str:
    """Move the database and its side files to `<path>.damaged-<time>`; the new name."""
    stem = f"{path}.damaged-{time.strftime(dbfile.STAMP)}"
    aside, n = stem, 1
    while any(os.path.exists(aside + s) for s in SIDE_FILES):
        aside, n = f"{stem}-{n}", n + 1
    for suffix in SIDE_FILES:
        if os.path.exists(path + suffix):
            os.replace(path + suffix, aside + suffix)
    return aside


def _put_back(aside: str, path: str) -> None:
    for suffix in SIDE_FILES:
        if os.path.exists(aside + suffix) and not os.path.exists(path + suffix):
            os.replace(aside + suffix, path + suffix)
