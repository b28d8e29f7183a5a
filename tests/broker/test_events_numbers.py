"""The events table's row numbers (schema 5: no AUTOINCREMENT): a number is never given
twice, even when the newest rows are pruned or were pruned by a release before schema 5,
so a cursor on `events.since` (the notifier's) never skips a row written after it."""

from __future__ import annotations

import sqlite3
import time

import pytest

from luzia.broker import migrations
from luzia.broker.job import Job
from luzia.broker.store import EVENTS_MARK, Store
from luzia.states import JobState
from tests.dbfixtures import copy_fixture, recorded


def _job(n: int) -> Job:
    now = time.time()
    return Job(id=f"20261130-1300-{n:04x}", seq=n, project="demo", user="alice", task=f"t{n}",
               priority=2, type="code", timeout=60.0, max_retries=0, workdir="",
               submitted_at=now, updated_at=now)


def _rows(path) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT seq, job_id, at, state, detail FROM events ORDER BY seq").fetchall()
    finally:
        db.close()


def _finish(store: Store, job: Job) -> None:
    job.move(JobState.KILLED, "by a test")
    job.finished_at = time.time()
    store.save(job, "by a test")


def test_a_new_database_numbers_events_without_autoincrement(tmp_path):
    store = Store(str(tmp_path / "luzia.db"))
    store.insert_all([_job(1), _job(2)])
    store.commit()
    assert store.events_high_water() == 2
    names = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master")}
    assert "events_v5" not in names and "events_job" in names
    # sqlite_sequence stays (SQLite never drops it), with no row for events
    assert not store.db.execute("SELECT * FROM sqlite_sequence WHERE name='events'").fetchall()
    store.close()


def test_pruning_the_newest_events_keeps_their_number_across_a_restart(tmp_path):
    path = str(tmp_path / "luzia.db")
    store = Store(path)
    old, new = _job(1), _job(2)
    store.insert_all([old, new])
    _finish(store, new)
    _finish(store, old)             # the newest events row is the one pruned
    store.commit()
    mark = store.events_high_water()
    assert store.prune(keep=0) == 2 and store.events_high_water() == mark
    store.commit()
    store.close()
    again = Store(path)
    assert again.events_high_water() == mark
    again.insert_all([_job(3)])
    again.commit()
    assert [r[0] for r in _rows(path)] == [mark + 1]
    assert again.meta(EVENTS_MARK) is None       # spent: the newest row carries it now
    again.close()


def test_a_mark_autoincrement_kept_above_pruned_rows_survives_the_migration(tmp_path):
    path = tmp_path / "luzia.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    migrations.upgrade(db, 0, 4)
    db.executemany("INSERT INTO events (job_id, at, state, detail) VALUES (?, 0, 'pending', '')",
                   [(f"j{n}",) for n in range(5)])
    db.execute("DELETE FROM events WHERE seq >= 4")      # pruned by a release before schema 5
    db.execute("COMMIT")
    db.close()
    store = Store(str(path))
    assert store.opened.from_version == 4
    assert [r[0] for r in _rows(path)] == [1, 2, 3] and store.events_high_water() == 5
    store.insert_all([_job(9)])
    store.commit()
    assert [r[0] for r in _rows(path)] == [1, 2, 3, 6]
    store.close()


@pytest.mark.parametrize("fixture", recorded(), ids=lambda p: p.name)
def test_a_recorded_databases_events_keep_their_numbers_when_migrated(tmp_path, fixture):
    path = copy_fixture(fixture, tmp_path / "luzia.db")
    before = _rows(path)
    store = Store(str(path))
    assert _rows(path) == before and store.events_high_water() == before[-1][0]
    plan = store.db.execute("EXPLAIN QUERY PLAN SELECT seq FROM events WHERE job_id=? "
                            "ORDER BY seq", ("x",)).fetchall()
    assert "events_job" in str(plan)
    store.close()
