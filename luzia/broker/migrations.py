"""Schema versions of the job database (luzia.db) and the migrations between them.

A database's version is SQLite's `PRAGMA user_version`. The first release (schema 1) kept
it only in the `meta` table (`schema = 1`, user_version 0); such a database is version 1.
A database with no tables is version 0: "migration 1" creates the first release's tables,
so a new database is made by the same steps that upgrade an old one.

Migrations are forward-only and run at broker start, all that are due in one transaction
(SQLite's DDL is transactional: a failure leaves the database as it was). Before that the
broker keeps a copy of the old file beside it (dbopen.open_db; docs/DEPLOY.md "Upgrading").
A database newer than LATEST comes from a newer release and is refused, never written.

Adding a migration, the whole recipe:

1. Append `N: (...)` to MIGRATIONS below: SQL statements, or functions of the connection
   for a change that SQL alone cannot make. Never edit one that was released, nor v1.
2. Teach the store the change (store.py: the column in `_SCALARS`, the `Job` field with a
   default, so rows that older releases wrote read back).
3. Record the database of the release before the change, as the fixture its upgrade test
   opens: `python tests/fixtures/make_fixture.py --commit main` writes
   tests/fixtures/luzia-schema{N-1}.db (tests/fixtures/README.md).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

Step = str | Callable[[sqlite3.Connection], object]

# The first release's tables (commit f8da7fe), exactly as it made them. Frozen: a change to
# the schema is a new migration below, never an edit here.
V1: tuple[Step, ...] = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    project TEXT NOT NULL,
    user TEXT NOT NULL,
    task TEXT NOT NULL,
    priority INTEGER NOT NULL,
    type TEXT NOT NULL,
    timeout REAL NOT NULL,
    max_retries INTEGER NOT NULL,
    retries INTEGER NOT NULL DEFAULT 0,
    after TEXT NOT NULL,
    metadata TEXT NOT NULL,
    workdir TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    host TEXT NOT NULL DEFAULT '',
    attempt INTEGER NOT NULL DEFAULT 0,
    progress REAL NOT NULL DEFAULT -1,
    message TEXT NOT NULL DEFAULT '',
    tail TEXT NOT NULL DEFAULT '[]',
    exit_code INTEGER,
    stalled INTEGER NOT NULL DEFAULT 0,
    submitted_at REAL NOT NULL,
    assigned_at REAL,
    started_at REAL,
    finished_at REAL,
    updated_at REAL NOT NULL
)""",
    "CREATE INDEX jobs_state ON jobs (state)",
    "CREATE INDEX jobs_seq ON jobs (seq)",
    "CREATE INDEX jobs_finished ON jobs (finished_at)",
    "CREATE INDEX jobs_submitted ON jobs (submitted_at)",
    """CREATE TABLE attempts (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    host TEXT NOT NULL,
    assigned_at REAL,
    started_at REAL,
    finished_at REAL,
    exit_code INTEGER,
    reason TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (job_id, attempt)
)""",
    """CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    at REAL NOT NULL,
    state TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
)""",
    "CREATE INDEX events_job ON events (job_id)",
)

def _events_mark(db: sqlite3.Connection) -> None:
    """Keep AUTOINCREMENT's mark in meta where it is above the newest events row (the newest
    rows were pruned): the next row is numbered above it, so no cursor misses it."""
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name='events'").fetchone()
    newest = db.execute("SELECT MAX(seq) FROM events").fetchone()[0] or 0
    if row and int(row[0]) > newest:
        db.execute("INSERT OR REPLACE INTO meta VALUES ('events_mark', ?)", (str(int(row[0])),))


# version -> the steps that take a database from version-1 to it
MIGRATIONS: dict[int, tuple[Step, ...]] = {
    1: V1,
    # who submitted the job (the Unix user or CURVE key's user: issue 17 item 7); NULL for
    # the jobs older releases wrote
    2: ("ALTER TABLE jobs ADD COLUMN submitter TEXT",),
    # workspaces (issue 12, docs/WORKSPACES.md): a job's repo and base as submitted, the base
    # commit its first attempt fixed, its branch and worktree (path, host), its end on the
    # branch (commit, files, lines), the push home, and whether it was merged or discarded;
    # each attempt's base commit (a retry says it kept it)
    3: tuple(f"ALTER TABLE jobs ADD COLUMN {column}" for column in (
        "repo TEXT NOT NULL DEFAULT ''", "base TEXT NOT NULL DEFAULT ''",
        "base_commit TEXT NOT NULL DEFAULT ''", "branch TEXT NOT NULL DEFAULT ''",
        "workspace TEXT NOT NULL DEFAULT ''", "workspace_host TEXT NOT NULL DEFAULT ''",
        "head_commit TEXT NOT NULL DEFAULT ''", "files_changed INTEGER",
        "lines_added INTEGER NOT NULL DEFAULT 0", "lines_removed INTEGER NOT NULL DEFAULT 0",
        "push TEXT NOT NULL DEFAULT ''", "outcome TEXT NOT NULL DEFAULT ''", "outcome_at REAL",
    )) + ("ALTER TABLE attempts ADD COLUMN base_commit TEXT NOT NULL DEFAULT ''",),
    # agent-aware jobs (issue 13, docs/AGENTS.md): cost, tokens, turns, model, session and
    # account per job (the sum of its attempts) and per attempt; the session the next attempt
    # resumes; paused jobs' reset time and pause count; a ledger of spend per UTC day for
    # the budgets (kept when old jobs are pruned)
    4: (*(f"ALTER TABLE {table} ADD COLUMN {column}" for table in ("jobs", "attempts")
          for column in ("cost_usd REAL", "tokens_in INTEGER NOT NULL DEFAULT 0",
                         "tokens_out INTEGER NOT NULL DEFAULT 0",
                         "cache_read INTEGER NOT NULL DEFAULT 0",
                         "cache_write INTEGER NOT NULL DEFAULT 0",
                         "turns INTEGER NOT NULL DEFAULT 0", "model TEXT NOT NULL DEFAULT ''",
                         "session_id TEXT NOT NULL DEFAULT ''",
                         "account TEXT NOT NULL DEFAULT ''")),
        "ALTER TABLE jobs ADD COLUMN resume TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE jobs ADD COLUMN paused_until REAL",
        "ALTER TABLE jobs ADD COLUMN pauses INTEGER NOT NULL DEFAULT 0",
        """CREATE TABLE spend (
    day TEXT NOT NULL,
    user TEXT NOT NULL,
    project TEXT NOT NULL,
    cost_usd REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (day, user, project)
)"""),
    # events numbered without AUTOINCREMENT (issue 15, docs/DECISIONS.md): its
    # sqlite_sequence row was read and written for every event row inserted. The mark it
    # kept above rows already deleted moves to meta (store.EVENTS_MARK) when it is higher.
    5: (_events_mark,
        """CREATE TABLE events_v5 (
    seq INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    at REAL NOT NULL,
    state TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
)""",
        "INSERT INTO events_v5 (seq, job_id, at, state, detail) "
        "SELECT seq, job_id, at, state, detail FROM events ORDER BY seq",
        "DROP TABLE events",
        "ALTER TABLE events_v5 RENAME TO events",
        "CREATE INDEX events_job ON events (job_id)"),
}
LATEST = max(MIGRATIONS)

TABLES = ("meta", "jobs", "attempts", "events", "spend")     # what a Luzia job database holds


class NotLuzia(Exception):
    """The file is an SQLite database, but not one Luzia wrote."""


def version_of(db: sqlite3.Connection) -> int:
    """The schema version of an open database (0: empty). Raises NotLuzia."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version:
        return int(version)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not tables:
        return 0
    if "meta" in tables:     # the first release: the version only in the meta table
        row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row and str(row[0]).isdigit():
            return int(row[0])
    raise NotLuzia(f"tables {', '.join(sorted(tables))} but no Luzia schema version")


def upgrade(db: sqlite3.Connection, current: int, target: int | None = None) -> None:
    """Apply the migrations after `current` up to `target` (LATEST), inside the caller's
    transaction, and record the new version (user_version, and the meta row people and old
    releases read)."""
    target = LATEST if target is None else target
    for version in range(current + 1, target + 1):
        for step in MIGRATIONS[version]:
            if callable(step):
                step(db)
            else:
                db.execute(step)
    db.execute(f"PRAGMA user_version = {int(target)}")
    db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(target),))
