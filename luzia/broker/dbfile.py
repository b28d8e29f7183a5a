"""The job database as a file: its schema version and whether it is whole (probe, check),
and consistent copies of it (backup, with SQLite's backup API).

Used at broker start (dbopen.open_db) and by `luzia db` on the broker's host. Nothing here
needs the broker, and nothing here writes the database: a probe or a check opens it
read-only, so it is safe while the broker runs (salvage.py makes a new file instead).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from luzia import __version__
from luzia.broker import migrations
from luzia.errors import StoreError
from luzia.places import fsync_path
from luzia.states import JOB_STATE_NAMES

STAMP = "%Y%m%dT%H%M%S"      # local time, as in the logs: in the names of copies and set-asides
FAILED_SUFFIX = ".failed"    # `luzia.db.failed`: the broker stopped on a database error
JSON_COLUMNS = {"after": list, "metadata": dict, "tail": list}


def connect_ro(path: str) -> sqlite3.Connection:
    """A read-only connection: it never writes the database (a WAL file still gets its -shm)."""
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
    return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)


@dataclass
class Probe:
    """What a read-only look at a database file found."""

    path: str
    size: int = 0            # bytes of the main file; 0: missing or empty
    exists: bool = False
    version: int = 0         # the schema version; 0: no tables (a new database)
    damage: str = ""         # what the integrity check found, one line; "" when whole
    checked: bool = True     # False: the check ran out of its time budget (not damage)
    unreadable: str = ""     # why it cannot be read at all: not SQLite, not Luzia's

    @property
    def empty(self) -> bool:
        return self.size == 0 or (self.version == 0 and not (self.damage or self.unreadable))


def probe(path: str, full: bool = False, budget: float | None = None) -> Probe:
    """Open `path` read-only: its version and `quick_check` (full: `integrity_check`),
    given up after `budget` seconds if one is set. A database newer than this release
    knows is not checked (it is refused anyway)."""
    found = Probe(path)
    try:
        found.size = os.path.getsize(path)
        found.exists = True
    except FileNotFoundError:
        return found
    except OSError as exc:
        found.unreadable = f"unreadable ({exc.strerror or exc})"
        return found
    if found.size == 0:
        return found
    try:
        db = connect_ro(path)
        try:
            found.version = migrations.version_of(db)
            if found.version <= migrations.LATEST:
                damage = integrity(db, full, budget)
                found.damage, found.checked = damage or "", damage is not None
        finally:
            db.close()
    except migrations.NotLuzia as exc:
        found.unreadable = f"not a Luzia job database ({exc})"
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc):
            found.unreadable = f"not an SQLite database ({exc})"
        else:
            found.damage = one_line(str(exc))
    return found


def integrity(db: sqlite3.Connection, full: bool = False,
              budget: float | None = None) -> str | None:
    """"" if the database is whole, else what SQLite's check found, on one line; None if
    it did not finish within `budget` seconds."""
    pragma = "integrity_check" if full else "quick_check"
    timer = None
    if budget is not None:
        # the rows pass stops at the progress handler; the b-tree walk is one long step
        # that only interrupt() (from a timer) reaches
        deadline = time.monotonic() + budget
        db.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
        timer = threading.Timer(budget, db.interrupt)
        timer.start()
    try:
        rows = [str(r[0]) for r in db.execute(f"PRAGMA {pragma}(20)")]
    except sqlite3.OperationalError as exc:
        if timer is not None and "interrupted" in str(exc):
            return None
        return one_line(str(exc))
    except sqlite3.DatabaseError as exc:      # a page so bad the check itself stops
        return one_line(str(exc))
    finally:
        if timer is not None:
            timer.cancel()
            db.set_progress_handler(None, 0)
    if rows == ["ok"]:
        return ""
    lines = [ln for r in rows for ln in r.splitlines() if ln.strip() and not ln.startswith("***")]
    more = f" (and {len(lines) - 3} more)" if len(lines) > 3 else ""
    return "; ".join(lines[:3]) + more


def refuse(path: str, found: Probe) -> None:
    """StoreError for a database the broker must not open: unreadable, damaged, or from a
    newer release (dbopen.open_db, before anything writes it)."""
    name = os.path.basename(path)
    if found.unreadable:
        raise StoreError(f"job database {path} is {found.unreadable}: see `luzia db check`; "
                         f"`luzia db recover` salvages what it can and keeps the file aside")
    if found.version > migrations.LATEST:
        raise StoreError(
            f"job database {path} is schema {found.version}, from a newer Luzia release (this "
            f"one, {__version__}, knows schema {migrations.LATEST} at most): run the newer "
            f"release, or put back the copy it kept before migrating ({name}.schema"
            f"{migrations.LATEST}-*.bak)")
    if found.damage:
        raise StoreError(f"job database {path} is damaged ({found.damage}): see `luzia db "
                         f"check`, then `luzia db recover` with the broker stopped")


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def check(path: str, full: bool = True) -> dict[str, Any]:
    """What `luzia db check` reports: version and what this release does with it, integrity,
    what the database holds, the copies beside it; `ok` and one line of `advice`."""
    started = time.monotonic()
    found = probe(path, full=full)
    verdict = _verdict(found)
    out: dict[str, Any] = {
        "path": path, "bytes": found.size, "wal_bytes": _size(path + "-wal"),
        "schema": found.version if verdict in ("current", "migrate", "newer") else None,
        "latest": migrations.LATEST,
        "verdict": verdict, "check": "integrity_check" if full else "quick_check",
        "integrity": found.damage or ("ok" if verdict in ("current", "migrate") else "not checked")}
    if verdict in ("current", "migrate"):
        db = connect_ro(path)
        try:
            out.update(contents(db))
        finally:
            db.close()
    out["failed"] = failed_mark(path) or None
    out["copies"] = copies_beside(path)
    out["seconds"] = round(time.monotonic() - started, 3)
    unreadable = [k for k in ("jobs", "attempts", "events", "bad_rows", "drained")
                  if isinstance(out.get(k), str)]
    out["ok"] = (verdict in ("current", "migrate") and not found.damage and not unreadable
                 and not out.get("bad_rows"))
    out["advice"] = _advice(found, verdict, out["ok"])
    return out


def _verdict(found: Probe) -> str:
    if found.unreadable:
        return "unreadable"
    if found.empty and not found.damage:
        return "missing"
    if found.damage and not found.version:      # too damaged to say its version
        return "damaged"
    if found.version > migrations.LATEST:
        return "newer"
    return "migrate" if found.version < migrations.LATEST else "current"


def _advice(found: Probe, verdict: str, ok: bool) -> str:
    name = os.path.basename(found.path)
    if verdict == "missing":
        return ("no job database: the broker makes a new one at its next start (and rebuilds "
                "unfinished jobs from their job directories, if there are any)")
    if verdict == "unreadable":
        return f"{found.unreadable}: stop the broker, then `luzia db recover`"
    if verdict == "newer":
        return (f"schema {found.version} is from a newer Luzia release: this one refuses it. "
                f"Run the newer release, or put back {name}.schema{migrations.LATEST}-*.bak")
    if not ok:
        return "damaged: stop the broker, then `luzia db recover` (it keeps this file aside)"
    if verdict == "migrate":
        return (f"the broker migrates it from schema {found.version} to {migrations.LATEST} "
                "at its next start, after a copy beside it")
    return "ok"


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


# copies -------------------------------------------------------------------------------
def backup(src: str, dest: str) -> dict[str, Any]:
    """Copy `src` to `dest` with SQLite's backup API in one step: one read transaction, so
    a consistent snapshot even while the broker commits (in WAL mode a reader never blocks
    the writer). The copy is one self-contained file (rollback journal), mode 0600, written
    under a temporary name and renamed: `dest` is whole or absent."""
    started = time.monotonic()
    if not os.path.exists(src):
        raise StoreError(f"no job database at {src}")
    tmp = os.path.join(os.path.dirname(os.path.abspath(dest)), f".{os.path.basename(dest)}.tmp")
    _remove(tmp, tmp + "-journal")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        source = connect_ro(src)
        try:
            version = migrations.version_of(source)
            copy = sqlite3.connect(tmp, isolation_level=None)
            try:
                source.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")
                damage = integrity(copy)
                jobs = copy.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] if version else 0
            finally:
                copy.close()
        finally:
            source.close()
        fsync_path(tmp)
        os.replace(tmp, dest)
        fsync_path(os.path.dirname(os.path.abspath(dest)))
    except (OSError, sqlite3.Error, migrations.NotLuzia) as exc:
        _remove(tmp, tmp + "-journal")
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise StoreError(f"cannot back up {src} to {dest}: {one_line(str(why))}") from None
    return {"source": src, "backup": dest, "schema": version, "jobs": jobs,
            "bytes": os.path.getsize(dest), "integrity": damage or "ok",
            "seconds": round(time.monotonic() - started, 3)}


def backup_beside(path: str, version: int) -> str:
    """The copy kept before a migration: `luzia.db.schema1-20261130T101500.bak`."""
    stem = f"{path}.schema{version}-{time.strftime(STAMP)}"
    dest, n = f"{stem}.bak", 1
    while os.path.exists(dest):
        dest, n = f"{stem}-{n}.bak", n + 1
    backup(path, dest)
    return dest


def copies_beside(path: str) -> list[dict[str, Any]]:
    """The copies kept before migrations and the files recover set aside, oldest first."""
    folder, name = Path(path).parent, Path(path).name
    found = [p for p in folder.glob(f"{name}.*")
             if p.name.endswith(".bak") or (".damaged-" in p.name and p.name[-4:] not in ("-wal", "-shm"))]
    return [{"path": str(p), "bytes": p.stat().st_size} for p in sorted(found, key=_mtime)]


# the broker stopped on a database error ---------------------------------------------
def mark_failed(path: str, why: str) -> None:
    """Leave `luzia.db.failed`, so the next start runs the full integrity check."""
    try:
        Path(path + FAILED_SUFFIX).write_text(f"{time.strftime(STAMP)} {why}\n")
    except OSError:
        pass     # the disk may be what failed; the next start then runs the quick check


def failed_mark(path: str) -> str:
    try:
        return Path(path + FAILED_SUFFIX).read_text().strip()
    except OSError:
        return ""


def clear_failed(path: str) -> None:
    _remove(path + FAILED_SUFFIX)


# what is in it --------------------------------------------------------------------------
def contents(db: sqlite3.Connection) -> dict[str, Any]:
    """Counts, drained agents, notes and the job rows that do not decode, for `db check`.
    Each part that cannot be read says so instead of failing the whole answer."""
    out: dict[str, Any] = {}
    parts = {
        "jobs": lambda: dict(db.execute("SELECT state, COUNT(*) FROM jobs NOT INDEXED GROUP BY state")),
        "attempts": lambda: db.execute("SELECT COUNT(*) FROM attempts NOT INDEXED").fetchone()[0],
        "events": lambda: db.execute("SELECT COUNT(*) FROM events NOT INDEXED").fetchone()[0],
        "meta": lambda: dict(db.execute("SELECT key, value FROM meta")),
        "bad_rows": lambda: bad_job_rows(db),
    }
    for name, read in parts.items():
        try:
            out[name] = read()
        except sqlite3.DatabaseError as exc:
            out[name] = f"unreadable: {one_line(str(exc))}"
    meta = out.pop("meta")
    if isinstance(meta, dict):
        try:
            out["drained"] = json.loads(meta.get("drained", "[]"))
            out["notes"] = {k: json.loads(v) for k, v in meta.items() if k in ("rebuild", "rebuilt")}
        except ValueError as exc:
            out["drained"] = f"unreadable: {exc}"
    return out


def bad_job_rows(db: sqlite3.Connection, limit: int = 20) -> list[dict[str, str]]:
    """Job rows the broker could not read back (text that is not UTF-8, JSON that does not
    parse, an unknown state): SQLite's checks do not look inside values."""
    text = [r[1] for r in db.execute("PRAGMA table_info(jobs)") if r[2].upper() == "TEXT"]
    bad = []
    db.text_factory = bytes
    try:
        for row in db.execute(f"SELECT {', '.join(text)} FROM jobs NOT INDEXED"):
            why = row_problem(dict(zip(text, row, strict=True)))
            if why:
                bad.append({"id": row[0].decode(errors="replace"), "why": why})
                if len(bad) >= limit:
                    break
    finally:
        db.text_factory = str
    return bad


def row_problem(row: dict[str, Any]) -> str:
    """Why a jobs row (text columns as bytes) would not read back, or ""."""
    for name, value in row.items():
        if isinstance(value, bytes):
            try:
                value.decode()
            except UnicodeDecodeError:
                return f"{name} is not UTF-8 text"
    for name, kind in JSON_COLUMNS.items():
        try:
            if not isinstance(json.loads(row.get(name) or b"null"), kind):
                return f"{name} is not a JSON {kind.__name__}"
        except ValueError:
            return f"{name} is not JSON"
    if (row.get("state") or b"").decode(errors="replace") not in JOB_STATE_NAMES:
        return "unknown state"
    return ""


# files ---------------------------------------------------------------------------------
def _remove(*paths: str) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
