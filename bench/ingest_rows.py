"""The SQL of ingest alone: rows/s of a turn's inserts + COMMIT (WAL, synchronous=FULL), for
the row the broker writes and the candidates measured against it (BENCHMARKS.md, "Narrower
rows"), interleaved round by round so that every candidate sees the same load. No decoding,
no broker: the ceiling the store puts on ingest.

Run: .venv/bin/python bench/ingest_rows.py [--batch 2048] [--turns 10] [--rounds 3] [--dir D]
(--dir /dev/shm leaves out the fsync: the CPU of the SQL alone)
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import _common  # noqa: F401  (puts the repository first on sys.path)
import msgspec

from luzia.broker import migrations
from luzia.broker.job import Job
from luzia.broker.store import _INSERT_EVENT, _INSERT_JOB, _INSERT_NEW, Store
from luzia.ids import new_job_id

Write = Callable[[sqlite3.Connection, list[Job]], None]
_ENC = msgspec.msgpack.Encoder()
_PARTIAL = ("DROP INDEX jobs_finished",
            "CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL")
# schema 4's events table (AUTOINCREMENT: sqlite_sequence read and written per row)
_AUTOINCREMENT = ("DROP TABLE events", "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                  "job_id TEXT NOT NULL, at REAL NOT NULL, state TEXT NOT NULL, "
                  "detail TEXT NOT NULL DEFAULT '')", "CREATE INDEX events_job ON events (job_id)")
# jobs' seq as the rowid would drop this index (schema 5 keeps it: DECISIONS, ingest4)
_NO_SEQ_INDEX = ("DROP INDEX jobs_seq",)
_SUBMISSIONS = ("CREATE TABLE submissions (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, "
                "spec BLOB NOT NULL)",)


def _events(db: sqlite3.Connection, jobs: list[Job]) -> None:
    now = time.time()
    db.executemany(_INSERT_EVENT, [(j.id, now, "pending", "") for j in jobs])


def whole(db: sqlite3.Connection, jobs: list[Job]) -> None:
    """main before ingest2: every column bound."""
    db.executemany(_INSERT_JOB, [Store._row(j) for j in jobs])
    _events(db, jobs)


def narrow(db: sqlite3.Connection, jobs: list[Job]) -> None:
    """ingest2: what a new job sets, the defaults for the rest (store.insert_all)."""
    db.executemany(_INSERT_NEW, [Store._new_row(j) for j in jobs])
    _events(db, jobs)


def narrow_no_event(db: sqlite3.Connection, jobs: list[Job]) -> None:
    """Not taken: the pending event row implied by submitted_at (events.since lists it)."""
    db.executemany(_INSERT_NEW, [Store._new_row(j) for j in jobs])


def submissions(db: sqlite3.Connection, jobs: list[Job]) -> None:
    """Not taken: one narrow row a submission, the jobs row made off the hot path."""
    db.executemany("INSERT INTO submissions VALUES (?, ?, ?)", [
        (j.seq, j.id, _ENC.encode((j.project, j.user, j.task, j.priority, j.type, j.timeout,
                                   j.max_retries, j.workdir, j.submitted_at))) for j in jobs])


CANDIDATES: dict[str, tuple[tuple[str, ...], Write]] = {
    "whole row + event (main)": ((), whole),
    "narrow row + event (ingest2, schema 5)": ((), narrow),
    "the same, events AUTOINCREMENT (schema 4)": (_AUTOINCREMENT, narrow),
    "the same, no jobs_seq index": (_NO_SEQ_INDEX, narrow),
    "narrow row + event, partial jobs_finished": (_PARTIAL, narrow),
    "narrow row, no event row": ((), narrow_no_event),
    "submissions table only": (_SUBMISSIONS, submissions),
}


def _jobs(seq: int, n: int) -> list[Job]:
    now = time.time()
    return [Job(id=new_job_id(), seq=seq + i, project="demo", user=f"u{i % 100}",
                task=f"task {i}", priority=2, type="code", timeout=3600.0, max_retries=0,
                workdir="", submitted_at=now, updated_at=now) for i in range(n)]


def rate(where: str, extra: tuple[str, ...], write: Write, batch: int, turns: int) -> float:
    """Rows/s of `turns` turns of `batch` rows, after as many turns to fill the indexes."""
    path = Path(tempfile.mkdtemp(dir=where)) / "luzia.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("BEGIN")
    migrations.upgrade(db, 0)
    db.execute("COMMIT")
    for statement in extra:
        db.execute(statement)
    took, seq = 0.0, 1
    for turn in range(2 * turns):
        jobs = _jobs(seq, batch)
        seq += batch
        start = time.perf_counter()
        db.execute("BEGIN")
        write(db, jobs)
        db.execute("COMMIT")
        took += time.perf_counter() - start if turn >= turns else 0.0
    db.close()
    for leftover in path.parent.iterdir():
        leftover.unlink()
    path.parent.rmdir()
    return turns * batch / took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    runs: dict[str, list[float]] = {name: [] for name in CANDIDATES}
    load = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name, (extra, write) in CANDIDATES.items():
            runs[name].append(rate(args.dir, extra, write, args.batch, args.turns))
    print(f"{args.batch} rows a turn, {args.dir}, load {load:.1f} -> {os.getloadavg()[0]:.1f}")
    for name, got in runs.items():
        print(f"  {name:44s} median {statistics.median(got):9,.0f}/s   "
              f"({', '.join(f'{r:,.0f}' for r in got)})")


if __name__ == "__main__":
    main()
