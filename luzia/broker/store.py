"""The job store: SQLite in WAL mode, written by the broker's one thread only.

Writes join the open transaction; the broker calls `commit()` once per loop turn (group
commit), and only then acts on what it wrote (sends Assign, unlinks spool files, replies).
The interface is small on purpose, so a fleet that outgrows one host can put the job table
elsewhere without touching the scheduler.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from luzia.errors import StateDirError
from luzia.states import JobState, Priority

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
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
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
CREATE INDEX IF NOT EXISTS jobs_seq ON jobs (seq);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at);
CREATE INDEX IF NOT EXISTS jobs_submitted ON jobs (submitted_at);
CREATE TABLE IF NOT EXISTS attempts (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    host TEXT NOT NULL,
    assigned_at REAL,
    started_at REAL,
    finished_at REAL,
    exit_code INTEGER,
    reason TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (job_id, attempt)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    at REAL NOT NULL,
    state TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id);
"""

_SCALARS = ("id", "seq", "project", "user", "task", "priority", "type", "timeout",
            "max_retries", "retries", "workdir", "state", "reason", "host", "attempt",
            "progress", "message", "exit_code", "submitted_at", "assigned_at", "started_at",
            "finished_at", "updated_at")
_COLUMNS = _SCALARS + ("after", "metadata", "tail", "stalled")


@dataclass(slots=True)
class Job:
    """A job as the broker holds it. Mutated only by the broker's loop."""

    id: str
    seq: int
    project: str
    user: str
    task: str
    priority: int
    type: str
    timeout: float
    max_retries: int
    workdir: str
    submitted_at: float
    state: JobState = JobState.PENDING
    after: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    retries: int = 0
    reason: str = ""
    host: str = ""
    attempt: int = 0
    progress: float = -1.0
    message: str = ""
    tail: list[str] = field(default_factory=list)
    exit_code: int | None = None
    stalled: bool = False
    stalled_since: float | None = None    # unix time its output stopped (kept in memory only)
    assigned_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float = 0.0

    def move(self, new: JobState, reason: str | None = None) -> None:
        """Change state through the state machine (raises IllegalTransition on a bug)."""
        self.state = self.state.check(new)
        if reason is not None:
            self.reason = reason

    def reset_attempt(self) -> None:
        """Clear what belongs to one attempt (its host, times, exit, progress): the job is
        pending again, or its next attempt begins. The attempts table keeps the old one."""
        self.host = ""
        self.assigned_at = self.started_at = self.finished_at = self.exit_code = None
        self.progress, self.message = -1.0, ""
        self.stalled, self.stalled_since = False, None

    def summary(self) -> dict[str, Any]:
        """The fields an event carries."""
        return {"id": self.id, "state": self.state.value, "project": self.project,
                "user": self.user, "priority": Priority(self.priority).label, "host": self.host,
                "attempt": self.attempt, "progress": self.progress, "message": self.message,
                "exit_code": self.exit_code, "reason": self.reason, "stalled": self.stalled}

    def to_dict(self, with_tail: bool = False) -> dict[str, Any]:
        """The job object of the control protocol (docs/PROTOCOL.md)."""
        out = {name: getattr(self, name) for name in _SCALARS if name != "seq"}
        out["state"] = self.state.value
        out["priority"] = Priority(self.priority).label
        out["after"] = list(self.after)
        out["metadata"] = dict(self.metadata)
        out["stalled"] = self.stalled
        out["stalled_since"] = self.stalled_since if self.stalled else None
        out["why"] = ""
        if with_tail:
            out["tail"] = list(self.tail)
        return out


class Store:
    """SQLite job store. One connection, one thread, explicit commit."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before the broker acts on it (acknowledged = durable)
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA busy_timeout=5000")
            self.db.executescript(SCHEMA)
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        except sqlite3.Error as exc:
            raise StateDirError(f"cannot open job database {path}: {exc}") from None
        self._in_tx = False
        self.next_seq = (self.db.execute("SELECT MAX(seq) FROM jobs").fetchone()[0] or 0) + 1

    # transactions -------------------------------------------------------------
    def _begin(self) -> None:
        if not self._in_tx:
            self.db.execute("BEGIN")
            self._in_tx = True

    def drained(self) -> set[str]:
        """The agents an operator drained (kept across broker restarts)."""
        row = self.db.execute("SELECT value FROM meta WHERE key='drained'").fetchone()
        return set(json.loads(row[0])) if row else set()

    def set_drained(self, names: set[str]) -> None:
        self._begin()
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('drained', ?)",
                        (json.dumps(sorted(names)),))

    def commit(self) -> bool:
        """Commit the open transaction, if any. True if something was written."""
        if not self._in_tx:
            return False
        self.db.execute("COMMIT")
        self._in_tx = False
        return True

    def close(self) -> None:
        if self._in_tx:
            self.commit()
        self.db.close()

    # jobs ---------------------------------------------------------------------
    def insert(self, job: Job) -> bool:
        """Insert a new job; False if its id exists already (a repeated submission)."""
        self._begin()
        cur = self.db.execute(
            f"INSERT OR IGNORE INTO jobs ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(_COLUMNS))})", self._row(job))
        if cur.rowcount:
            self.next_seq = max(self.next_seq, job.seq + 1)
            self._event(job, "")
        return bool(cur.rowcount)

    def save(self, job: Job, event: str | None = None) -> None:
        """Write the job's mutable fields; `event` (a detail string) also logs a transition."""
        self._begin()
        job.updated_at = time.time()
        self.db.execute(
            "UPDATE jobs SET retries=?, state=?, reason=?, host=?, attempt=?, progress=?, message=?,"
            " tail=?, exit_code=?, stalled=?, assigned_at=?, started_at=?, finished_at=?,"
            " updated_at=? WHERE id=?",
            (job.retries, job.state.value, job.reason, job.host, job.attempt, job.progress,
             job.message, json.dumps(job.tail), job.exit_code, int(job.stalled), job.assigned_at,
             job.started_at, job.finished_at, job.updated_at, job.id))
        if event is not None:
            self._event(job, event)

    def save_attempt(self, job: Job, reason: str = "") -> None:
        self._begin()
        self.db.execute(
            "INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (job.id, job.attempt, job.host, job.assigned_at, job.started_at, job.finished_at,
             job.exit_code, reason))

    def _event(self, job: Job, detail: str) -> None:
        self.db.execute("INSERT INTO events (job_id, at, state, detail) VALUES (?, ?, ?, ?)",
                        (job.id, time.time(), job.state.value, detail))

    def get(self, job_id: str) -> Job | None:
        row = self.db.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE id=?",
                              (job_id,)).fetchone()
        return self._job(row) if row else None

    def find(self, prefix: str, limit: int = 2) -> list[str]:
        """Ids starting with `prefix` (at most `limit`), for unique-prefix lookup."""
        hi = prefix + "\uffff"
        rows = self.db.execute("SELECT id FROM jobs WHERE id >= ? AND id < ? LIMIT ?",
                               (prefix, hi, limit)).fetchall()
        return [r[0] for r in rows]

    def unfinished(self) -> list[Job]:
        terminal = tuple(s.value for s in JobState if s.terminal)
        rows = self.db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE state NOT IN "
            f"({', '.join('?' * len(terminal))}) ORDER BY seq", terminal).fetchall()
        return [self._job(r) for r in rows]

    def states_of(self, ids: Iterable[str]) -> dict[str, JobState]:
        ids = list(ids)
        if not ids:
            return {}
        rows = self.db.execute(f"SELECT id, state FROM jobs WHERE id IN ({', '.join('?' * len(ids))})",
                               ids).fetchall()
        return {r[0]: JobState(r[1]) for r in rows}

    def recent(self, limit: int = 50, states: list[str] | None = None, project: str | None = None,
               user: str | None = None, since: float | None = None) -> list[Job]:
        """The newest jobs (by arrival) that match every filter given."""
        where: list[str] = []
        args: list[Any] = []
        if states:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args += states
        if project:
            where.append("project = ?")
            args.append(project)
        if user:
            where.append("user = ?")
            args.append(user)
        if since:
            where.append("submitted_at >= ?")
            args.append(since)
        sql = f"SELECT {', '.join(_COLUMNS)} FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        return [self._job(r) for r in self.db.execute(sql, (*args, limit)).fetchall()]

    def attempts(self, job_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT attempt, host, assigned_at, started_at, finished_at, exit_code, reason"
            " FROM attempts WHERE job_id=? ORDER BY attempt", (job_id,)).fetchall()
        keys = ("attempt", "host", "assigned_at", "started_at", "finished_at", "exit_code", "reason")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def counts(self) -> dict[str, int]:
        return {s: n for s, n in self.db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state")}

    def prune(self, keep: int) -> int:
        """Delete the oldest finished jobs beyond `keep` (LUZIA_MAX_JOBS). Returns how many."""
        terminal = tuple(s.value for s in JobState if s.terminal)
        marks = ', '.join('?' * len(terminal))
        row = self.db.execute(
            f"SELECT seq FROM jobs WHERE state IN ({marks}) ORDER BY seq DESC LIMIT 1 OFFSET ?",
            (*terminal, keep)).fetchone()
        if not row:
            return 0
        self._begin()
        cutoff = row[0]
        victims = f"SELECT id FROM jobs WHERE state IN ({marks}) AND seq <= ?"
        self.db.execute(f"DELETE FROM attempts WHERE job_id IN ({victims})", (*terminal, cutoff))
        self.db.execute(f"DELETE FROM events WHERE job_id IN ({victims})", (*terminal, cutoff))
        cur = self.db.execute(f"DELETE FROM jobs WHERE state IN ({marks}) AND seq <= ?",
                              (*terminal, cutoff))
        return cur.rowcount

    # rows ---------------------------------------------------------------------
    @staticmethod
    def _row(job: Job) -> tuple:
        values = [getattr(job, name) for name in _SCALARS]
        values[_SCALARS.index("state")] = job.state.value
        return (*values, json.dumps(job.after), json.dumps(job.metadata), json.dumps(job.tail),
                int(job.stalled))

    @staticmethod
    def _job(row: tuple) -> Job:
        values = dict(zip(_COLUMNS, row, strict=True))
        values["state"] = JobState(values["state"])
        values["after"] = json.loads(values["after"])
        values["metadata"] = json.loads(values["metadata"])
        values["tail"] = json.loads(values["tail"])
        values["stalled"] = bool(values["stalled"])
        return Job(**values)
