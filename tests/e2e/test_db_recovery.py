"""A damaged, lost or busy job database, with real processes (issue 17 item 2): a bad page
found only when read fails that request, not the broker (under a real supervisor); a write
that hits it stops the broker in one line and the next start checks in full; a bad page
at start is one line and exit 73; `luzia db recover` salvages it; a lost luzia.db beside
job directories rebuilds the unfinished jobs; `luzia db backup` while the broker works."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading

import pytest

from luzia.broker.store import Store
from luzia.jobstatus import attempt_record
from tests.dbfixtures import (
    COMPLETED,
    CRITICAL,
    SCHEMA1,
    STATES,
    copy_fixture,
    damage_id_index,
    damage_index_key,
    zero_page,
)
from tests.fleet import PY, SLEEPER, LocalFleet, fleet_config, jobs_json
from tests.helpers import wait_for


def one_line(out: subprocess.CompletedProcess, code: int) -> str:
    err = out.stderr.decode()
    assert out.returncode == code and err.count("\n") == 1, (out.returncode, err)
    return err


def start_broker_once(fleet: LocalFleet) -> subprocess.CompletedProcess:
    """A broker that is expected to refuse to start."""
    return subprocess.run([PY, "-m", "luzia.broker"], env=fleet.env, capture_output=True, timeout=60)


def fixture_ids(home) -> dict[str, str]:
    db = sqlite3.connect(f"file:{home / 'luzia.db.schema1-copy'}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT task, id FROM jobs NOT INDEXED"))
    finally:
        db.close()


def damaged_home(short_tmp):
    home = short_tmp / "f"
    copy_fixture(SCHEMA1, home / "luzia.db.schema1-copy")     # to read the ids from
    damage_id_index(copy_fixture(SCHEMA1, home / "luzia.db"))
    return home, fixture_ids(home)


@pytest.mark.timeout(180)
def test_a_bad_page_found_only_when_read_fails_that_query_not_the_broker(short_tmp):
    home, ids = damaged_home(short_tmp)
    fleet = LocalFleet(home, "[supervisor]\nping_interval = 0.5\n" + fleet_config())
    fleet.start("supervisor", [PY, "-m", "luzia.supervisor", "--no-agent"])

    def broker() -> dict:
        out = fleet.cli("supervisor", "status", "--json")
        rows = {r["name"]: r for r in json.loads(out.stdout or "[]")} if out.returncode == 0 else {}
        return rows.get("broker") or {}
    try:
        wait_for(lambda: broker().get("state") == "running" and fleet.ping(), 30, message="broker up")
        pid = broker()["pid"]
        for _ in range(6):          # five such queries once made the supervisor give up on it
            err = one_line(fleet.cli("jobs", ids[COMPLETED], "--json"), 73)
            assert "malformed" in err and "luzia db check" in err
        queue = jobs_json(fleet.cli("queue", "status", "--json"))
        assert queue["pending"] == 2                              # other requests: answered
        assert jobs_json(fleet.cli("jobs", ids[CRITICAL], "--json"))["state"] == "pending"
        assert fleet.ping() and broker()["pid"] == pid and broker()["restarts"] == 0

        check = fleet.cli("db", "check")
        assert "malformed" in check.stdout.decode()
        assert "luzia db recover" in one_line(check, 73)
        busy = one_line(fleet.cli("db", "recover"), 75)
        assert "stop it first" in busy

        assert fleet.cli("supervisor", "stop", "broker").returncode == 0
        wait_for(lambda: broker().get("state") == "stopped", 30)
        out = fleet.cli("db", "recover")
        assert out.returncode == 0, out.stderr.decode()
        said = out.stdout.decode()
        assert "luzia.db.damaged-" in said and "jobs 5 of 5" in said
        assert fleet.cli("supervisor", "start", "broker").returncode == 0
        wait_for(fleet.ping, 30, message="broker back")
        listed = jobs_json(fleet.cli("jobs", "--json"))
        assert {j["task"]: j["state"] for j in listed} == STATES
        assert jobs_json(fleet.cli("jobs", ids[COMPLETED], "--json"))["state"] == "completed"
        assert fleet.cli("db", "check").returncode == 0
    finally:
        fleet.close()


def test_a_write_that_hits_a_bad_page_stops_the_broker_in_one_line_losing_nothing(short_tmp):
    home, ids = damaged_home(short_tmp)
    fleet = LocalFleet(home, fleet_config())
    try:
        broker = fleet.start_broker()
        job = fleet.submit("demo", "a job the damaged index cannot take")
        assert broker.wait(30) == 73
        lines = fleet.output("broker").strip().splitlines()
        assert "failed" in lines[-1] and "luzia db check" in lines[-1], lines[-1]
        assert "Traceback" not in fleet.output("broker")
        assert (home / "spool" / f"{job}.job").exists()          # nothing acknowledged, nothing lost
        assert (home / "luzia.db.failed").exists()

        err = one_line(start_broker_once(fleet), 73)        # the next start checks in full
        assert "damaged" in err and "malformed" in err and "luzia db recover" in err

        assert fleet.cli("db", "recover").returncode == 0
        fleet.procs.pop("broker")
        fleet.start_broker()
        wait_for(lambda: fleet.state(job) == "pending", 15)      # taken from the spool at last
        assert not (home / "spool" / f"{job}.job").exists()
        assert not (home / "luzia.db.failed").exists()
    finally:
        fleet.close()


@pytest.mark.parametrize("table", ["jobs", "sqlite_autoindex_jobs_1", "events"])
def test_a_bad_page_at_start_is_one_line_naming_the_file_and_the_fix(short_tmp, table):
    home = short_tmp / "f"
    zero_page(copy_fixture(SCHEMA1, home / "luzia.db"), table)
    fleet = LocalFleet(home)
    try:
        err = one_line(start_broker_once(fleet), 73)
    finally:
        fleet.close()
    assert str(home / "luzia.db") in err and "luzia db check" in err and "luzia db recover" in err


def test_a_bad_page_the_quick_check_misses_at_start_is_one_line_and_the_next_start_checks_in_full(short_tmp):
    home = short_tmp / "f"
    path = copy_fixture(SCHEMA1, home / "luzia.db")
    Store(str(path)).close()                         # migrated: the start says nothing else
    damage_index_key(path, "jobs_seq", last=True)    # the start's MAX(seq) reads it
    fleet = LocalFleet(home)
    try:
        err = one_line(start_broker_once(fleet), 73)
        assert "failed at start" in err and "malformed" in err and "luzia db recover" in err
        err = one_line(start_broker_once(fleet), 73)
        assert "damaged" in err and "luzia db recover" in err
    finally:
        fleet.close()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("loss", ["missing", "zero-length"])
def test_a_lost_database_beside_job_dirs_says_so_and_rebuilds_the_unfinished_jobs(short_tmp, loss):
    fleet = LocalFleet(short_tmp / "f", fleet_config(f'slots = 2\nrunner = "subprocess"\n{SLEEPER}'))
    home = fleet.home
    try:
        fleet.start_broker()
        fleet.start_agent("a1")
        wait_for(lambda: fleet.live_agents() == {"a1"}, 30)
        done = fleet.submit("demo", "0")
        wait_for(lambda: fleet.state(done) == "completed", 30)
        go = home / "go"                     # the job runs until the test makes it
        running = fleet.submit("demo", str(go))
        wait_for(lambda: fleet.state(running) == "running", 30)
        # the agent forgets a finished job once the broker acknowledged its end: then only
        # the database knew it (until then a rebuild would take its end from the agent)
        wait_for(lambda: attempt_record(home / "jobs" / done)[0].get("acked"), 30)
        fleet.kill("broker", signal.SIGKILL)
        for name in ("luzia.db", "luzia.db-wal", "luzia.db-shm"):
            (home / name).unlink(missing_ok=True)
        if loss == "zero-length":
            (home / "luzia.db").write_bytes(b"")
        spooled = fleet.submit("demo", "0")          # "queued, broker offline": in the spool

        fleet.start_broker()
        said = fleet.output("broker")
        assert ("was empty (0 bytes)" if loss == "zero-length" else "was missing") in said
        assert "history" in said and "rebuilt 1 unfinished jobs" in said and running in said
        go.touch()
        wait_for(lambda: fleet.state(running) == "completed" and fleet.state(spooled) == "completed", 60)
        job = fleet.job(running)
        assert job and job["host"] == "a1" and [a["attempt"] for a in job["attempts"]] == [1]
        log = (home / "jobs" / running / "output.log").read_text()
        assert "attempt 2" not in log                         # re-adopted, not run again
        assert fleet.cli("jobs", done, "--json").returncode == 2      # history: gone, as said
        check = jobs_json(fleet.cli("db", "check", "--json"))
        assert check["notes"]["rebuilt"]["ids"] == [running]
    finally:
        fleet.close()


@pytest.mark.long
@pytest.mark.timeout(240)
def test_a_backup_while_the_broker_takes_submissions_is_whole_and_restores(short_tmp):
    # jobs that end at once: what they do is not the point, the database under them is
    fleet = LocalFleet(short_tmp / "f", fleet_config('slots = 4\nrunner = "subprocess"\ncommand = ["true"]'))
    home = fleet.home
    submitted: list[str] = []
    try:
        fleet.start_broker()
        fleet.start_agent("a1")

        def writer(n: int) -> None:
            for i in range(n):
                submitted.append(fleet.submit("demo", f"write {i}"))
        writers = [threading.Thread(target=writer, args=(15,)) for _ in range(2)]
        for w in writers:
            w.start()
        wait_for(lambda: len(submitted) >= 4, 60, message="submissions under way")
        copies = []
        for n in range(3):
            out = fleet.cli("db", "backup", str(home / f"copy{n}.db"), "--json")
            assert out.returncode == 0, out.stderr.decode()
            copies.append(json.loads(out.stdout))
        for w in writers:
            w.join(120)
        assert all(c["integrity"] == "ok" for c in copies)
        counts = [c["jobs"] for c in copies]
        assert counts == sorted(counts) and counts[-1] <= len(submitted)
        for n in range(3):
            db = sqlite3.connect(home / f"copy{n}.db")
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert set(r[0] for r in db.execute("SELECT id FROM jobs")) <= set(submitted)
            db.close()
        wait_for(lambda: all(fleet.state(j) == "completed" for j in submitted), 120)
        assert "locked" not in fleet.output("broker")

        # restoring a copy: broker stopped, the copy put in place of luzia.db and its WAL
        fleet.kill("broker", signal.SIGTERM)
        for name in ("luzia.db-wal", "luzia.db-shm"):
            (home / name).unlink(missing_ok=True)
        os.replace(home / "copy0.db", home / "luzia.db")
        fleet.start_broker()
        restored = jobs_json(fleet.cli("jobs", "--json", "--limit", "100"))
        assert len(restored) == copies[0]["jobs"]
    finally:
        fleet.close()
