"""The job database across releases and bad disks, in-process: migrations (luzia/broker/
migrations.py, dbopen.open_db), the start-up refusals, luzia/broker/dbfile.py (check,
backup) and luzia/broker/salvage.py (recover), on the recorded fixtures and damaged copies."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import stat

import pytest

from luzia import protocol
from luzia.broker import dbfile, migrations, salvage
from luzia.broker.job import Job
from luzia.broker.store import Store
from luzia.errors import StoreError
from luzia.states import JobState
from tests.broker.harness import Client, make_broker
from tests.dbfixtures import (
    SCHEMA1,
    STATES,
    WITH_METADATA,
    copy_fixture,
    damage_id_index,
    garble_text,
    recorded,
    submitter_of,
    zero_page,
)

JOB_COLUMNS = ("id", "task", "state", "user", "metadata")


def raw(path, sql: str, *args) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def by_task(store: Store) -> dict:
    return {j.task: j for j in store.recent(limit=100)}


# migrations ---------------------------------------------------------------------------
def test_a_new_database_is_made_by_the_migrations_and_is_at_the_latest_schema(tmp_path):
    store = Store(str(tmp_path / "luzia.db"))
    assert store.opened.created and not store.opened.existed and store.opened.backup is None
    store.close()
    assert raw(tmp_path / "luzia.db", "PRAGMA user_version") == [(migrations.LATEST,)]
    schema = raw(tmp_path / "luzia.db", "SELECT value FROM meta WHERE key='schema'")
    assert schema == [(str(migrations.LATEST),)]
    assert "submitter" in {r[1] for r in raw(tmp_path / "luzia.db", "PRAGMA table_info(jobs)")}
    assert not list(tmp_path.glob("*.bak"))


@pytest.mark.parametrize("fixture", recorded(), ids=lambda p: p.name)
def test_a_recorded_database_is_copied_then_migrated_and_keeps_every_job(tmp_path, caplog, fixture):
    path = copy_fixture(fixture, tmp_path / "luzia.db")
    caplog.set_level(logging.INFO, logger="luzia.broker.dbopen")
    store = Store(str(path))
    version = store.opened.from_version
    jobs = by_task(store)
    assert {task: j.state.value for task, j in jobs.items()} == STATES
    alice = jobs[WITH_METADATA].to_dict()
    assert (alice["user"], alice["metadata"], alice["submitter"]) == \
        ("alice", {"k": "v"}, submitter_of(fixture, WITH_METADATA))
    # schema 3's workspace fields: present, empty (no workspace)
    assert (alice["repo"], alice["branch"], alice["files_changed"], alice["outcome"]) == \
        ("", "", None, "")
    assert {a["base_commit"] for a in store.attempts(jobs[WITH_METADATA].id)} == {""}
    # schema 4's agent fields (docs/AGENTS.md): present, empty (no adapter reported any)
    assert (alice["cost_usd"], alice["tokens_in"], alice["session_id"], alice["pauses"],
            alice["paused_until"], alice["resume"]) == (None, 0, "", 0, None, "")
    assert [(a["cost_usd"], a["tokens_out"], a["account"])
            for a in store.attempts(jobs[WITH_METADATA].id)] == [(None, 0, "")]
    assert store.spend_since("1970-01-01") == []
    assert store.drained() == {"vm"}
    store.close()
    if version == migrations.LATEST:
        return
    assert f"migrated luzia.db from schema {version} to {migrations.LATEST}" in caplog.text
    [copy] = tmp_path.glob(f"luzia.db.schema{version}-*.bak")
    assert store.opened.backup is not None and copy == tmp_path / os.path.basename(store.opened.backup)
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert raw(copy, "PRAGMA journal_mode") == [("delete",)]       # one self-contained file
    assert {r[0]: r[1] for r in raw(copy, "SELECT task, state FROM jobs")} == STATES
    reopened = Store(str(path))
    assert reopened.opened.backup is None and reopened.opened.from_version == migrations.LATEST
    reopened.close()


def test_a_newer_database_is_refused_in_one_line_and_never_written(tmp_path):
    path = tmp_path / "luzia.db"
    Store(str(path)).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {migrations.LATEST + 1}")
    db.execute("PRAGMA journal_mode=DELETE")
    db.close()
    before = digest(path)
    with pytest.raises(StoreError) as err:
        Store(str(path))
    message = str(err.value)
    assert err.value.exit_code == 73 and "\n" not in message
    assert f"schema {migrations.LATEST + 1}" in message and "newer" in message and str(path) in message
    assert digest(path) == before and not (tmp_path / "luzia.db-wal").exists()
    assert not list(tmp_path.glob("*.bak"))


def test_a_failed_migration_leaves_the_database_as_it_was(tmp_path, monkeypatch):
    path = copy_fixture(SCHEMA1, tmp_path / "luzia.db")
    steps = dict(migrations.MIGRATIONS)
    steps[migrations.LATEST + 1] = ("ALTER TABLE jobs ADD COLUMN half TEXT", "THIS IS NOT SQL")
    monkeypatch.setattr(migrations, "MIGRATIONS", steps)
    monkeypatch.setattr(migrations, "LATEST", max(steps))
    with pytest.raises(StoreError, match="nothing changed") as err:
        Store(str(path))
    assert "\n" not in str(err.value) and ".bak" in str(err.value)
    columns = {r[1] for r in raw(path, "PRAGMA table_info(jobs)")}
    assert "half" not in columns and "submitter" not in columns     # migration 2 rolled back too
    db = sqlite3.connect(path)
    assert migrations.version_of(db) == 1
    db.close()


def test_adding_a_migration_is_one_entry(tmp_path, monkeypatch):
    steps = dict(migrations.MIGRATIONS)
    steps[migrations.LATEST + 1] = (
        "ALTER TABLE jobs ADD COLUMN cost REAL",
        lambda db: db.execute("UPDATE jobs SET cost = 0"))
    monkeypatch.setattr(migrations, "MIGRATIONS", steps)
    monkeypatch.setattr(migrations, "LATEST", max(steps))
    store = Store(str(copy_fixture(SCHEMA1, tmp_path / "luzia.db")))
    store.close()
    assert raw(tmp_path / "luzia.db", "SELECT DISTINCT cost FROM jobs") == [(0,)]
    assert raw(tmp_path / "luzia.db", "PRAGMA user_version") == [(max(steps),)]


# refusals at start ----------------------------------------------------------------------
@pytest.mark.parametrize("damage, words", [
    (lambda p: zero_page(p, "jobs"), "damaged"),
    (lambda p: zero_page(p, "sqlite_autoindex_jobs_1"), "damaged"),
    (lambda p: p.write_bytes(b"not a database " * 1000), "not an SQLite database"),
])
def test_a_bad_database_at_start_is_one_line_naming_the_file_and_the_fix(tmp_path, damage, words):
    path = copy_fixture(SCHEMA1, tmp_path / "luzia.db")
    damage(path)
    with pytest.raises(StoreError) as err:
        Store(str(path))
    message = str(err.value)
    assert err.value.exit_code == 73 and "\n" not in message
    assert str(path) in message and words in message and "luzia db" in message


def test_a_start_check_that_runs_out_of_time_is_said_and_the_start_goes_on(tmp_path, caplog, monkeypatch):
    store = Store(str(tmp_path / "luzia.db"))
    for n in range(500):                  # enough rows for the check to be interrupted
        store.insert(Job(id=f"101500-{n:012x}", seq=n + 1, project="p", user="u", task="t" * 200,
                         priority=2, type="code", timeout=0.0, max_retries=0, workdir="",
                         submitted_at=1.0, state=JobState.COMPLETED))
    store.close()
    assert dbfile.probe(str(tmp_path / "luzia.db"), budget=-1.0).checked is False
    monkeypatch.setattr("luzia.broker.dbopen.START_CHECK_BUDGET", -1.0)
    caplog.set_level(logging.WARNING)
    Store(str(tmp_path / "luzia.db")).close()
    assert "did not finish" in caplog.text and "luzia db check" in caplog.text


def test_a_zero_length_database_is_a_new_one(tmp_path):
    (tmp_path / "luzia.db").write_bytes(b"")
    store = Store(str(tmp_path / "luzia.db"))
    assert store.opened.created and store.opened.existed
    store.close()


def test_a_value_that_does_not_read_back_is_a_store_error_not_a_crash(tmp_path):
    path = copy_fixture(SCHEMA1, tmp_path / "luzia.db")
    db = sqlite3.connect(path)
    db.execute("UPDATE jobs SET metadata = '{half' WHERE task = ?", (WITH_METADATA,))
    db.commit()
    db.close()
    store = Store(str(path))
    job_id = raw(path, "SELECT id FROM jobs WHERE task = ?", WITH_METADATA)[0][0]
    with pytest.raises(StoreError, match=job_id) as err:
        store.get(job_id)
    assert err.value.code == "database"
    store.close()


# check, backup ------------------------------------------------------------------------
def test_check_finds_the_bad_page_that_quick_check_misses(tmp_path):
    path = copy_fixture(SCHEMA1, tmp_path / "luzia.db")
    damage_id_index(path)
    assert dbfile.check(str(path), full=False)["ok"]         # what the broker's start sees
    report = dbfile.check(str(path))
    assert not report["ok"] and "malformed" in report["integrity"]
    assert report["schema"] == 1 and report["verdict"] == "migrate"
    assert report["jobs"] == {"completed": 2, "failed": 1, "pending": 2}
    assert "luzia db recover" in report["advice"]


def test_check_says_what_this_release_does_with_each_version(tmp_path):
    assert dbfile.check(str(tmp_path / "none.db"))["verdict"] == "missing"
    old = copy_fixture(SCHEMA1, tmp_path / "old.db")
    assert dbfile.check(str(old))["verdict"] == "migrate"
    Store(str(old)).close()
    current = dbfile.check(str(old))
    assert (current["verdict"], current["ok"], current["schema"]) == ("current", True, migrations.LATEST)
    assert [c["path"] for c in current["copies"]] == [str(p) for p in tmp_path.glob("old.db.schema1-*.bak")]
    raw(old, f"PRAGMA user_version = {migrations.LATEST + 1}")
    newer = dbfile.check(str(old))
    assert (newer["verdict"], newer["ok"]) == ("newer", False)


def test_a_backup_is_one_private_self_contained_file(tmp_path):
    path = copy_fixture(SCHEMA1, tmp_path / "luzia.db")
    Store(str(path)).close()
    report = dbfile.backup(str(path), str(tmp_path / "copy.db"))
    assert (report["schema"], report["jobs"], report["integrity"]) == (migrations.LATEST, 5, "ok")
    copy = tmp_path / "copy.db"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert raw(copy, "PRAGMA journal_mode") == [("delete",)]
    assert not list(tmp_path.glob(".copy.db.tmp*"))
    with pytest.raises(StoreError, match="no job database"):
        dbfile.backup(str(tmp_path / "absent.db"), str(tmp_path / "x.db"))


# recover -------------------------------------------------------------------------------
def recovered(tmp_path, damage) -> tuple[dict, str]:
    path = copy_fixture(SCHEMA1, tmp_path / "luzia.db")
    damage(path)
    damaged = digest(path)
    report = salvage.recover(str(path))
    [aside] = [p for p in report["set_aside"] if not p.endswith(("-wal", "-shm"))]
    assert os.path.basename(aside).startswith("luzia.db.damaged-")
    assert hashlib.sha256(open(aside, "rb").read()).hexdigest() == damaged   # kept as it was
    assert dbfile.check(str(path))["integrity"] == "ok"
    return report, str(path)


def test_recover_rebuilds_a_damaged_index_and_keeps_every_row(tmp_path):
    report, path = recovered(tmp_path, damage_id_index)
    assert report["recovered"] == report["before"] == {"jobs": 5, "attempts": 3, "events": 14}
    store = Store(path)                  # the broker's start: migrates the salvaged file
    assert {t: j.state.value for t, j in by_task(store).items()} == STATES
    assert store.meta("rebuild")["why"].startswith("was recovered by `luzia db recover`")
    store.close()


def test_recover_steps_over_a_lost_page_and_says_what_it_got(tmp_path):
    report, path = recovered(tmp_path, lambda p: zero_page(p, "events"))
    assert report["method"] == "row by row"
    assert report["recovered"]["jobs"] == 5 and report["recovered"]["attempts"] == 3
    assert report["recovered"]["events"] == 0 and report["before"]["events"] is None


def test_recover_repairs_a_row_that_does_not_read_back(tmp_path):
    report, path = recovered(tmp_path, lambda p: garble_text(p, WITH_METADATA))
    assert report["repaired"] == 1 and report["recovered"]["jobs"] == 5
    store = Store(path)
    assert any("\ufffd" in j.task or any("\ufffd" in line for line in j.tail)
               for j in store.recent(limit=10))
    store.close()


def test_recover_without_the_sqlite3_tool_says_so_and_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(salvage.shutil, "which", lambda name: None)
    report, _ = recovered(tmp_path, damage_id_index)
    assert report["tried"][0] == "sqlite3 .recover: no sqlite3 command-line tool on PATH"
    assert report["method"] == "row by row" and report["recovered"]["jobs"] == 5


def test_recover_leaves_a_whole_database_alone_unless_forced(tmp_path):
    path = copy_fixture(SCHEMA1, tmp_path / "luzia.db")
    before = digest(path)
    assert salvage.recover(str(path))["method"] is None
    assert digest(path) == before and not list(tmp_path.glob("*.damaged-*"))
    forced = salvage.recover(str(path), force=True)
    assert forced["method"] and forced["recovered"]["jobs"] == 5


def test_recover_refuses_a_missing_database(tmp_path):
    with pytest.raises(StoreError, match="nothing to recover"):
        salvage.recover(str(tmp_path / "luzia.db"))


# the broker ------------------------------------------------------------------------------
def test_a_query_that_hits_a_bad_page_is_answered_with_the_error_and_the_broker_goes_on(short_tmp):
    home = short_tmp / "h"
    damage_id_index(copy_fixture(SCHEMA1, home / "luzia.db"))
    b = make_broker(home)
    client = Client(b.ctx, b)
    try:
        completed = raw(home / "luzia.db", "SELECT id FROM jobs NOT INDEXED WHERE state='completed'")[0][0]
        failed = client.call(b, "jobs.get", id=completed)
        assert not failed.ok and failed.code == "database" and "malformed" in failed.error
        assert client.call(b, "ping").ok
        pending = [j for j in b.model.jobs.values() if j.state is JobState.PENDING]
        assert len(pending) == 2              # the queue came back from the pages that read
    finally:
        client.close()
        b.close()


def test_a_lost_database_beside_job_dirs_is_said_and_the_unfinished_jobs_rebuilt(short_tmp, caplog):
    home = short_tmp / "h"
    spec = protocol.JobSpec(id="101500-0123456789ab", project="demo", task="still running",
                            user="alice", type="code", submitted_at=1.0)
    for job_id, acked in ((spec.id, False), ("101400-0123456789ab", True)):
        job_dir = home / "jobs" / job_id
        job_dir.mkdir(parents=True)
        plain = protocol.to_plain(protocol.JobSpec(**{**protocol.to_plain(spec), "id": job_id}))
        (job_dir / "meta.json").write_text(json.dumps({"job": plain, "attempt": 2, "created_at": 5.0}))
        (job_dir / "status.json").write_text(json.dumps({"attempt": 2, "acked": acked}))
    caplog.set_level(logging.WARNING)
    b = make_broker(home, '[agent]\nname = "gpu1"\n')
    try:
        job = b.model.jobs[spec.id]
        assert (job.state, job.host, job.attempt, job.task) == (JobState.RUNNING, "gpu1", 2, "still running")
        assert "101400-0123456789ab" not in b.model.jobs
        assert b.model.store.get("101400-0123456789ab") is None
        assert "was missing" in caplog.text and "history" in caplog.text
        assert "rebuilt 1 unfinished jobs" in caplog.text
        assert b.model.store.meta("rebuilt")["ids"] == [spec.id]
    finally:
        b.close()
