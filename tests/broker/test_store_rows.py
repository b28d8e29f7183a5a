"""A submission's row (store.insert_all): written in the columns a new job sets, the rest
left to the jobs table's defaults, it reads back as the job the broker holds, on a new
database and on every recorded release's database migrated; a job that is not fresh is
written whole."""

from __future__ import annotations

import time

import pytest

from luzia import protocol
from luzia.broker import lifecycle, store as store_mod
from luzia.broker.job import Job
from luzia.broker.store import Store
from luzia.identity import Submitter
from luzia.states import JobState
from tests.broker.harness import make_broker
from tests.dbfixtures import copy_fixture, recorded


def _job(n: int, **fields) -> Job:
    now = time.time()
    return Job(id=f"20261130-1200-{n:04x}", seq=1000 + n, project="demo", user="alice",
               task=f"task {n}", priority=2, type="code", timeout=60.0, max_retries=1,
               workdir="/w", submitted_at=now, updated_at=now, **fields)


def _jobs() -> list[Job]:
    rejected = _job(2, submitter="alice")
    rejected.move(JobState.REJECTED, "queue full")
    rejected.finished_at = rejected.updated_at
    return [
        _job(1),
        rejected,
        _job(3, after=[_job(1).id], metadata={"k": ["v", 1]}, repo="/r", base="main",
             base_commit="abc", submitter="bob"),
        _job(4, retries=2, tail=["a line"], host="vm", attempt=1, cost_usd=0.5, pauses=1),
    ]


@pytest.fixture(params=[None, *recorded()], ids=lambda p: p.name if p else "new")
def store(request, tmp_path):
    path = tmp_path / "luzia.db"
    if request.param is not None:
        copy_fixture(request.param, path)
    opened = Store(str(path))
    yield opened
    opened.close()


def test_a_submissions_row_reads_back_as_the_job_it_was(store):
    jobs = _jobs()
    store.insert_all(jobs)
    store.commit()
    for job in jobs:
        back = store.get(job.id)
        assert back is not None
        assert back.to_dict(with_tail=True) == job.to_dict(with_tail=True), job.task
        assert back.seq == job.seq
    assert store.next_seq == jobs[-1].seq + 1
    assert store.existing([j.id for j in jobs]) == {j.id for j in jobs}
    rows = store.db.execute("SELECT job_id, state FROM events WHERE job_id IN (?, ?, ?, ?)",
                            [j.id for j in jobs]).fetchall()
    assert sorted(rows) == sorted((j.id, j.state.value) for j in jobs)


def test_the_columns_left_to_their_defaults_default_to_a_new_jobs_fields(store):
    """What `_FRESH` says a new job holds is what the schema's defaults give (a column
    added with another default would make every submission read back wrong)."""
    columns = {row[1]: row[4] for row in store.db.execute("PRAGMA table_info(jobs)")}
    assert set(store_mod._DEFAULTED) <= set(columns)
    defaults = store.db.execute(
        "SELECT " + ", ".join(columns[c] or "NULL" for c in store_mod._DEFAULTED)).fetchone()
    fresh = [[] if v == "[]" else v for v in defaults]     # tail's JSON
    assert tuple(fresh) == tuple(store_mod._FRESH)


def test_a_duplicate_id_in_a_submissions_row_is_refused_by_the_database(store):
    store.insert_all([_job(1)])
    store.commit()
    with pytest.raises(Exception, match="UNIQUE"):
        store.insert_all([_job(1)])


def test_every_job_intake_makes_is_fresh(tmp_path):
    """intake writes its jobs as `fresh` (store.insert_all: not looked at): a field it set
    outside `_NEW` would be lost from the row, so none may, for any field of a JobSpec,
    a submitter, a rejection."""
    broker = make_broker(tmp_path, "max_pending = 2")
    now = time.time()
    first = protocol.JobSpec(id="20261130-1500-0001", project="demo", task="x", user="alice")
    full = protocol.JobSpec(id="20261130-1500-0002", project="demo", task="make it", user="alice",
                            priority=3, type="code", timeout=9.0, max_retries=2,
                            after=[first.id], metadata={"k": "v"}, workdir="/w",
                            submitted_at=now - 5, repo="/r", base="main", base_commit="a" * 40)
    over = protocol.JobSpec(id="20261130-1500-0003", project="demo", task="y", user="alice")
    jobs = [j for j in broker.submit_all([first, full, over], [Submitter("alice", admin=True)] * 3)
            if j is not None]
    assert [j.state for j in jobs] == [JobState.PENDING, JobState.PENDING, JobState.REJECTED]
    for job in jobs:
        assert store_mod._defaulted_of(job) == store_mod._FRESH, job.id
    broker.model.store.commit()
    back = broker.model.store.get(full.id)
    assert back is not None and back.to_dict() == jobs[1].to_dict()
    broker.close()


def test_an_id_only_the_store_has_is_a_duplicate_and_the_rest_of_its_turn_is_written_once(tmp_path):
    """A submission whose id the store has, finished (a spool file swept again after a
    restart), is a duplicate; the others of its turn are written once, events too, their
    seqs without a gap."""
    broker = make_broker(tmp_path)
    store = broker.model.store
    old = protocol.JobSpec(id="20261130-1600-0001", project="demo", task="x", user="alice")
    [job] = broker.submit_all([old])
    assert job is not None
    store.commit()
    lifecycle.finish(broker.model, job, JobState.KILLED, "by a test")
    store.commit()
    assert old.id not in broker.model.jobs          # only the store has it now
    fresh = [protocol.JobSpec(id=f"20261130-1600-000{n}", project="demo", task="y", user="alice")
             for n in (2, 3)]
    first, again, second = broker.submit_all([fresh[0], old, fresh[1]])
    store.commit()
    assert again is None and broker.model.counters["duplicates"] == 1
    assert first is not None and second is not None
    assert (first.seq, second.seq) == (job.seq + 1, job.seq + 2)
    assert store.next_seq == job.seq + 3
    rows = store.db.execute("SELECT job_id, state FROM events WHERE job_id != ? ORDER BY seq",
                            (old.id,)).fetchall()
    assert rows == [(fresh[0].id, "pending"), (fresh[1].id, "pending")]
    back = store.get(old.id)
    assert back is not None and back.state is JobState.KILLED
    broker.close()
