"""The job store: SQLite in WAL mode, written by the broker's one thread only.

Writes join the open transaction; the broker calls `commit()` once per loop turn (group
commit), and only then acts on what it wrote (sends Assign, unlinks spool files, replies).
The interface is small on purpose, so a fleet that outgrows one host can put the job table
elsewhere without touching the scheduler.

Opening it is luzia/broker/dbopen.py's (the refusals, the copy, the migrations).
"""

from __future__ import annotations

import json
import logging
import operator
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from luzia import protocol
from luzia.broker import dbfile
from luzia.broker.dbopen import open_db
from luzia.broker.job import AGENTWORK, SCALARS, STATE_VALUE, Job
from luzia.errors import StoreError
from luzia.states import TERMINAL_NAMES, JobState

log = logging.getLogger(__name__)

# what a job's workspace changes: schema 3's columns after the repo and base it was given
_WORKSPACE = SCALARS[SCALARS.index("base_commit"):SCALARS.index(AGENTWORK[0])]
_COLUMNS = SCALARS + ("after", "metadata", "tail", "stalled")
_MUTABLE = ("retries", "state", "reason", "host", "attempt", "progress", "message", "tail",
            "exit_code", "stalled", "assigned_at", "started_at", "finished_at", "updated_at",
            *AGENTWORK)
USAGE_COLUMNS = ("cost_usd", "tokens_in", "tokens_out", "cache_read", "cache_write", "turns",
                 "model", "session_id")     # an attempt's, as protocol.Usage names them
_ATTEMPT_COLUMNS = ("job_id", "attempt", "host", "assigned_at", "started_at", "finished_at",
                    "exit_code", "reason", "base_commit", *USAGE_COLUMNS, "account")
_INSERT_JOB = f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
# What a new job sets (intake._new_job, a rejection's reason and end): a submission's row
# names these and the columns' defaults fill the other ~30. Binding 54 values a row was
# most of the insert's cost (BENCHMARKS.md, "Narrower rows"); a job whose other fields are
# not their defaults (`_fresh`) is written whole.
_NEW = ("id", "seq", "project", "user", "task", "priority", "type", "timeout", "max_retries",
        "workdir", "state", "reason", "submitted_at", "finished_at", "updated_at", "submitter",
        "repo", "base", "base_commit", "after", "metadata")
_INSERT_NEW = f"INSERT INTO jobs ({', '.join(_NEW)}) VALUES ({', '.join('?' * len(_NEW))})"
_new_of = operator.attrgetter(*_NEW[:-2])
_NEW_STATE = _NEW.index("state")
_DEFAULTED = tuple(c for c in _COLUMNS if c not in _NEW)    # left to the columns' defaults
_defaulted_of = operator.attrgetter(*_DEFAULTED)
_STATE = SCALARS.index("state")
_scalars_of = operator.attrgetter(*SCALARS)
_INSERT_EVENT = "INSERT INTO events (job_id, at, state, detail) VALUES (?, ?, ?, ?)"
# Events rows are numbered max(seq) + 1 (schema 5: no AUTOINCREMENT), so a number is never
# reused only while the newest row stays; where it went (pruned), its number stays here and
# the next row is numbered above it (`Store._events`).
EVENTS_MARK = "events_mark"


def _json(value: Any, empty: str) -> str:
    return json.dumps(value) if value else empty     # most jobs: nothing to encode


def _filters(states: list[str] | None, project: str | None, user: str | None,
             since: float | None, host: str | None, text: str | None) -> tuple[str, list[Any]]:
    """A WHERE clause (with its leading space, or "") and its parameters. `text` matches the
    start of an id or any part of the task, case-insensitively for ASCII (SQLite's LIKE)."""
    where: list[str] = []
    args: list[Any] = []
    if states:
        where.append(f"state IN ({', '.join('?' * len(states))})")
        args += states
    for column, value in (("project", project), ("user", user), ("host", host)):
        if value:
            where.append(f"{column} = ?")
            args.append(value)
    if since:
        where.append("submitted_at >= ?")
        args.append(since)
    if text:
        pattern = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append("(id LIKE ? ESCAPE '\\' OR task LIKE ? ESCAPE '\\')")
        args += [pattern + "%", "%" + pattern + "%"]
    return (" WHERE " + " AND ".join(where) if where else ""), args


class Store:
    """SQLite job store. One connection, one thread, explicit commit."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.db, self.opened = open_db(path)
        self._in_tx = False
        self.next_seq = (self.db.execute("SELECT MAX(seq) FROM jobs").fetchone()[0] or 0) + 1
        mark = int(self.meta(EVENTS_MARK) or 0)
        self._events_mark = mark if mark > self._newest_event() else 0

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

    def abandon(self, exc: Exception) -> StoreError:
        """The database failed under a write: roll back what this turn wrote (none of it was
        acted on), leave the mark that makes the next start check it in full, and close.
        The error to stop the broker with."""
        try:
            if self._in_tx:
                self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass        # SQLite may have rolled it back itself
        self._in_tx = False
        self.db.close()
        why = dbfile.one_line(str(exc))
        dbfile.mark_failed(self.path, why)
        return StoreError(f"job database {self.path} failed: {why}; the broker stops without "
                          f"acting on what it had not saved. Next: `luzia db check`")

    def query_failed(self, exc: sqlite3.Error) -> StoreError:
        """A read failed (a damaged page): the error that answers the request instead."""
        why = dbfile.one_line(str(exc))
        log.error("job database %s failed a query: %s (see `luzia db check`)", self.path, why)
        return StoreError(f"the broker's job database failed this query: {why}. On the "
                          f"broker's host: `luzia db check`")

    # meta ---------------------------------------------------------------------------
    def meta(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        """Keep `value` (JSON) under `key`; None deletes it."""
        self._begin()
        if value is None:
            self.db.execute("DELETE FROM meta WHERE key=?", (key,))
        else:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    # jobs ---------------------------------------------------------------------
    def insert(self, job: Job) -> bool:
        """Insert a new job; False if its id exists already (a repeated submission)."""
        self._begin()
        cur = self.db.execute(_INSERT_JOB.replace("INSERT", "INSERT OR IGNORE", 1), self._row(job))
        if cur.rowcount:
            self.next_seq = max(self.next_seq, job.seq + 1)
            self._event(job, "")
        return bool(cur.rowcount)

    def insert_all(self, jobs: list[Job], fresh: bool = False) -> None:
        """Insert new jobs (ids the store does not have: `existing`) and their first event
        rows, each table in one statement. `fresh`: every job is as intake made it (no
        field outside `_NEW` set, tests/broker/test_store_rows.py), so none is looked at
        (~0.4 µs a submission)."""
        if not jobs:
            return
        self._begin()
        narrow: list[tuple] = []
        whole: list[tuple] = []
        if fresh:
            narrow = [self._new_row(job) for job in jobs]
        else:
            for job in jobs:
                if _defaulted_of(job) == _FRESH:
                    narrow.append(self._new_row(job))
                else:
                    whole.append(self._row(job))
        self.db.executemany(_INSERT_NEW, narrow)
        if whole:
            self.db.executemany(_INSERT_JOB, whole)
        now = time.time()
        self._events([(job.id, now, STATE_VALUE[job.state], "") for job in jobs])
        self.next_seq = max(self.next_seq, max(job.seq for job in jobs) + 1)

    def existing(self, ids: list[str]) -> set[str]:
        """Those of `ids` the store has."""
        found: set[str] = set()
        for at in range(0, len(ids), 500):      # within SQLite's limit on parameters
            chunk = ids[at:at + 500]
            rows = self.db.execute(f"SELECT id FROM jobs WHERE id IN ({', '.join('?' * len(chunk))})",
                                   chunk)
            found.update(r[0] for r in rows)
        return found

    def save(self, job: Job, event: str | None = None, name: str | None = None) -> None:
        """Write the job's mutable fields; `event` (a detail string) also logs a transition,
        as the job's state or as `name` (an event that is no state: states.NEEDS_INPUT)."""
        self._begin()
        job.updated_at = time.time()
        values = [getattr(job, column) for column in _MUTABLE]
        values[_MUTABLE.index("state")] = job.state.value
        values[_MUTABLE.index("tail")] = json.dumps(job.tail)
        values[_MUTABLE.index("stalled")] = int(job.stalled)
        self.db.execute(f"UPDATE jobs SET {', '.join(f'{n}=?' for n in _MUTABLE)} WHERE id=?",
                        (*values, job.id))
        if job.repo:
            self.save_workspace(job)
        if event is not None:
            self._event(job, event, name)

    def save_workspace(self, job: Job, event: str | None = None) -> None:
        """Write what the job's workspace changed (schema 3); `event` logs it too."""
        self._begin()
        self.db.execute(f"UPDATE jobs SET {', '.join(c + '=?' for c in _WORKSPACE)} WHERE id=?",
                        (*(getattr(job, c) for c in _WORKSPACE), job.id))
        if event is not None:
            self._event(job, event)

    def save_attempt(self, job: Job, reason: str | None = "") -> None:
        """Write the job's current attempt (its usage too); reason None keeps the stored one."""
        self._begin()
        usage = job.attempt_usage
        if reason is None:
            row = self.db.execute("SELECT reason FROM attempts WHERE job_id=? AND attempt=?",
                                  (job.id, job.attempt)).fetchone()
            reason = row[0] if row else ""
        cost = usage.cost_usd if usage.cost_usd >= 0 else None
        self.db.execute(
            f"INSERT OR REPLACE INTO attempts ({', '.join(_ATTEMPT_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(_ATTEMPT_COLUMNS))})",
            (job.id, job.attempt, job.host, job.assigned_at, job.started_at, job.finished_at,
             job.exit_code, reason, job.base_commit, cost,
             *(getattr(usage, n) for n in USAGE_COLUMNS[1:]), job.account))

    def attempt_usage(self, job_id: str, attempt: int) -> protocol.Usage:
        """The usage stored for one attempt (after a restart: the running attempt's so far)."""
        row = self.db.execute(f"SELECT {', '.join(USAGE_COLUMNS)} FROM attempts WHERE job_id=?"
                              " AND attempt=?", (job_id, attempt)).fetchone()
        if row is None:
            return protocol.NO_USAGE
        values = dict(zip(USAGE_COLUMNS, row, strict=True))
        values["cost_usd"] = -1.0 if values["cost_usd"] is None else values["cost_usd"]
        try:
            return protocol.check(protocol.Usage(**values))
        except protocol.ProtocolError:
            return protocol.NO_USAGE

    # spend (the budgets' ledger) ----------------------------------------------------------
    def add_spend(self, day: str, user: str, project: str, cost: float) -> None:
        self._begin()
        self.db.execute("INSERT INTO spend VALUES (?, ?, ?, ?) ON CONFLICT (day, user, project) "
                        "DO UPDATE SET cost_usd = cost_usd + excluded.cost_usd",
                        (day, user, project, cost))

    def spend_since(self, day: str) -> list[tuple[str, str, str, float]]:
        """(day, user, project, cost) from `day` (YYYY-MM-DD, UTC) on."""
        return self.db.execute("SELECT day, user, project, cost_usd FROM spend WHERE day >= ?",
                               (day,)).fetchall()

    def _event(self, job: Job, detail: str, name: str | None = None) -> None:
        self._events([(job.id, time.time(), name or job.state.value, detail)])

    def _events(self, rows: list[tuple]) -> None:
        """Insert events rows (job_id, at, state, detail), numbered after every row ever
        written: the first above the mark the pruned newest rows left, if they did."""
        if self._events_mark:
            self.db.execute("INSERT INTO events (seq, job_id, at, state, detail) "
                            "VALUES (?, ?, ?, ?, ?)", (self._events_mark + 1, *rows[0]))
            self.db.execute("DELETE FROM meta WHERE key=?", (EVENTS_MARK,))
            self._events_mark = 0
            rows = rows[1:]
        self.db.executemany(_INSERT_EVENT, rows)

    def _newest_event(self) -> int:
        return self.db.execute("SELECT MAX(seq) FROM events").fetchone()[0] or 0

    def events_high_water(self) -> int:
        """The number of the newest events row ever written (0: none): a cursor at it has
        read everything, and every row written after is numbered above it."""
        return self._events_mark or self._newest_event()

    def last_event(self, job_id: str) -> tuple[str, float]:
        """The name (state) and time of the job's newest events row, ("", 0) without one."""
        row = self.db.execute("SELECT state, at FROM events WHERE job_id=? ORDER BY seq DESC "
                              "LIMIT 1", (job_id,)).fetchone()
        return (str(row[0]), float(row[1])) if row else ("", 0.0)

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
               user: str | None = None, since: float | None = None, offset: int = 0,
               host: str | None = None, text: str | None = None) -> list[Job]:
        """The newest jobs (by arrival) that match every filter given, from `offset` on."""
        where, args = _filters(states, project, user, since, host, text)
        if states and TERMINAL_NAMES.issuperset(states):
            # finished jobs are most of a long history: walking the seq index newest first
            # finds a page at once, where the state index would sort them all first
            where = where.replace("state IN", "+state IN", 1)
        sql = f"SELECT {', '.join(_COLUMNS)} FROM jobs{where} ORDER BY seq DESC LIMIT ? OFFSET ?"
        return [self._job(r) for r in self.db.execute(sql, (*args, limit, offset)).fetchall()]

    def count(self, states: list[str] | None = None, project: str | None = None,
              user: str | None = None, since: float | None = None, host: str | None = None,
              text: str | None = None) -> tuple[int, dict[str, int]]:
        """(jobs matching every filter, {state: n} matching every filter but the states)."""
        where, args = _filters(None, project, user, since, host, text)
        # no filter: the state index alone answers; with one, a plain scan beats looking up
        # every row through the state index
        source = "jobs NOT INDEXED" if where else "jobs"
        rows = self.db.execute(f"SELECT state, COUNT(*) FROM {source}{where} GROUP BY state", args)
        by_state = {state: n for state, n in rows}
        total = sum(n for state, n in by_state.items() if not states or state in states)
        return total, by_state

    def attempts(self, job_id: str) -> list[dict[str, Any]]:
        keys = _ATTEMPT_COLUMNS[1:]
        rows = self.db.execute(f"SELECT {', '.join(keys)} FROM attempts WHERE job_id=? "
                               "ORDER BY attempt", (job_id,)).fetchall()
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
        newest = self.events_high_water()
        self.db.execute(f"DELETE FROM events WHERE job_id IN ({victims})", (*terminal, cutoff))
        if self._newest_event() < newest:       # the newest rows went: keep their number
            self._events_mark = newest
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (EVENTS_MARK, str(newest)))
        cur = self.db.execute(f"DELETE FROM jobs WHERE state IN ({marks}) AND seq <= ?",
                              (*terminal, cutoff))
        return cur.rowcount

    # rows ---------------------------------------------------------------------
    @staticmethod
    def _row(job: Job) -> tuple:
        values = list(_scalars_of(job))     # one C call: a getattr per column costs a job ~5 µs
        values[_STATE] = STATE_VALUE[job.state]
        return (*values, _json(job.after, "[]"), _json(job.metadata, "{}"), _json(job.tail, "[]"),
                int(job.stalled))

    @staticmethod
    def _new_row(job: Job) -> tuple:
        """A new job's row in `_NEW`'s columns (the rest are their defaults: `_FRESH`)."""
        values = list(_new_of(job))
        values[_NEW_STATE] = STATE_VALUE[job.state]
        return (*values, _json(job.after, "[]"), _json(job.metadata, "{}"))

    @staticmethod
    def _job(row: tuple) -> Job:
        values = dict(zip(_COLUMNS, row, strict=True))
        try:
            values["state"] = JobState(values["state"])
            values["after"] = json.loads(values["after"])
            values["metadata"] = json.loads(values["metadata"])
            values["tail"] = json.loads(values["tail"])
        except (TypeError, ValueError) as exc:    # a damaged value SQLite's checks cannot see
            log.error("job %s does not read back from the job database: %s", values["id"], exc)
            raise StoreError(f"job {values['id']} does not read back from the job database "
                             f"({dbfile.one_line(str(exc), 120)}): see `luzia db check`") from None
        values["stalled"] = bool(values["stalled"])
        return Job(**values)


# a new Job's fields outside `_NEW`: what the jobs table's column defaults must read back as
# (tests/test_store.py checks them against the schema)
_FRESH = _defaulted_of(Job(id="", seq=0, project="", user="", task="", priority=0, type="",
                           timeout=0.0, max_retries=0, workdir="", submitted_at=0.0))
