"""luzia-notify's own durable state (SQLite in WAL, `notify.db` in the state dir): the outbox
of notifications, the cursor into the broker's events table, and the fleet conditions seen.

An event becomes its notifications, and the cursor moves past it, in one transaction; a
notification is one row per (event key, target), so seeing an event again adds nothing.
A row leaves `pending` only when its target took it (`sent`) or it was given up (`failed`).
Written by the notifier's loop thread only.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from luzia.errors import StateDirError
from luzia.states import NoticeState

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS notices (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    level TEXT NOT NULL,
    state TEXT NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    due REAL NOT NULL,
    done_at REAL,
    error TEXT NOT NULL DEFAULT '',
    UNIQUE (key, target)
);
CREATE INDEX IF NOT EXISTS notices_due ON notices (state, target, due);
CREATE TABLE IF NOT EXISTS conditions (
    subject TEXT PRIMARY KEY,
    active INTEGER NOT NULL,
    episode INTEGER NOT NULL,
    since REAL NOT NULL
);
"""
CURSOR = "events_seq"        # meta key: the last broker events row taken into the outbox
SCHEMA_VERSION = 1           # meta 'schema': what a later release migrates from


@dataclass
class Notice:
    """One notification for one target."""

    id: int
    key: str
    target: str
    kind: str
    title: str
    body: str
    level: str
    state: NoticeState
    tries: int
    created: float
    due: float
    error: str = ""


_COLUMNS = "id, key, target, kind, title, body, level, state, tries, created, due, error"


class Outbox:
    """The notifier's database. One connection, one thread."""

    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.path = str(path)
        if not create and not Path(self.path).exists():
            raise StateDirError(f"no notifier database at {self.path}")
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            # FULL: a notification recorded (and the cursor moved past its event) is on disk
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA busy_timeout=5000")
            if create:
                self.db.executescript(SCHEMA)
                self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)",
                                (str(SCHEMA_VERSION),))
        except sqlite3.Error as exc:
            raise StateDirError(f"cannot open the notifier database {self.path}: {exc}") from None

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together, or not at all."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # the cursor into the broker's events ----------------------------------------------
    def cursor(self) -> int | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (CURSOR,)).fetchone()
        return int(row[0]) if row else None

    def set_cursor(self, seq: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (CURSOR, str(seq)))

    # what is to be sent ------------------------------------------------------------------
    def add(self, key: str, target: str, kind: str, title: str, body: str, level: str,
            now: float) -> bool:
        """One notification; False if this event already has one for this target."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO notices (key, target, kind, title, body, level, state, created,"
            " due) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, target, kind, title, body, level, NoticeState.PENDING.value, now, now))
        return bool(cur.rowcount)

    def known(self, key: str) -> bool:
        """Has this event any notification already (for any target)?"""
        return self.db.execute("SELECT 1 FROM notices WHERE key=? LIMIT 1", (key,)).fetchone() is not None

    def observe(self, subject: str, active: bool, now: float) -> int:
        """A fleet condition (an agent dead, the queue rejecting) seen on or off: the episode
        number when it has just come on (a notification is due), else 0."""
        row = self.db.execute("SELECT active, episode FROM conditions WHERE subject=?",
                              (subject,)).fetchone()
        was, episode = (bool(row[0]), row[1]) if row else (False, 0)
        if was == active:
            return 0
        episode += 1 if active else 0
        self.db.execute("INSERT OR REPLACE INTO conditions VALUES (?, ?, ?, ?)",
                        (subject, int(active), episode, now))
        return episode if active else 0

    # delivery ----------------------------------------------------------------------------
    def next_for(self, target: str, now: float) -> Notice | None:
        """The oldest notification of `target` due by `now`."""
        row = self.db.execute(
            f"SELECT {_COLUMNS} FROM notices WHERE state=? AND target=? AND due<=? "
            "ORDER BY id LIMIT 1", (NoticeState.PENDING.value, target, now)).fetchone()
        return _notice(row) if row else None

    def next_due(self) -> float | None:
        """When the earliest pending notification is due (unix time), None if none is."""
        row = self.db.execute("SELECT MIN(due) FROM notices WHERE state=?",
                              (NoticeState.PENDING.value,)).fetchone()
        return row[0]

    def sent(self, notice: Notice, now: float) -> None:
        notice.state = notice.state.check(NoticeState.SENT)
        self.db.execute("UPDATE notices SET state=?, tries=tries+1, done_at=?, error='' WHERE id=?",
                        (notice.state.value, now, notice.id))

    def retry(self, notice: Notice, due: float, error: str) -> None:
        notice.state = notice.state.check(NoticeState.PENDING)
        notice.tries += 1
        self.db.execute("UPDATE notices SET tries=?, due=?, error=? WHERE id=?",
                        (notice.tries, due, error, notice.id))

    def failed(self, notice: Notice, now: float, error: str) -> None:
        notice.state = notice.state.check(NoticeState.FAILED)
        self.db.execute("UPDATE notices SET state=?, tries=tries+1, done_at=?, error=? WHERE id=?",
                        (notice.state.value, now, error, notice.id))

    def expired(self, before: float) -> list[Notice]:
        """Pending notifications created before `before` (to be given up)."""
        rows = self.db.execute(f"SELECT {_COLUMNS} FROM notices WHERE state=? AND created<?",
                               (NoticeState.PENDING.value, before)).fetchall()
        return [_notice(r) for r in rows]

    def prune(self, before: float) -> int:
        """Forget sent and failed notifications finished before `before`."""
        cur = self.db.execute("DELETE FROM notices WHERE state!=? AND done_at<?",
                              (NoticeState.PENDING.value, before))
        return cur.rowcount

    # what `luzia notify status` shows ------------------------------------------------------
    def counts(self) -> dict[str, dict[str, Any]]:
        """Per target: {pending, sent, failed, last_sent, last_error}."""
        out: dict[str, dict[str, Any]] = {}
        for target, state, n in self.db.execute(
                "SELECT target, state, COUNT(*) FROM notices GROUP BY target, state"):
            row = out.setdefault(target, _empty())
            row[state] = n
        for target, at in self.db.execute(
                "SELECT target, MAX(done_at) FROM notices WHERE state=? GROUP BY target",
                (NoticeState.SENT.value,)):
            out.setdefault(target, _empty())["last_sent"] = at
        for target, error in self.db.execute(
                "SELECT target, error FROM notices WHERE id IN (SELECT MAX(id) FROM notices"
                " WHERE error != '' GROUP BY target)"):
            out.setdefault(target, _empty())["last_error"] = error
        return out

    def keys(self, target: str | None = None) -> list[tuple[str, str, str]]:
        """(key, target, state) of every notification, oldest first (for tests and status)."""
        sql = "SELECT key, target, state FROM notices"
        rows = self.db.execute(sql + " WHERE target=? ORDER BY id" if target else sql + " ORDER BY id",
                               (target,) if target else ()).fetchall()
        return [tuple(r) for r in rows]


def _empty() -> dict[str, Any]:
    return {s.value: 0 for s in NoticeState} | {"last_sent": None, "last_error": ""}


def _notice(row: tuple) -> Notice:
    values = list(row)
    values[7] = NoticeState(values[7])
    return Notice(*values)

