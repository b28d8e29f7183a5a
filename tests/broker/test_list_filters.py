"""The dashboard's broker-side paging: jobs.list's offset and filters (host, text), the
total of jobs.count, and stats' per-day rows; all optional arguments, so older clients
ask and get what they always did."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from luzia.broker import intake, ops
from luzia.broker.ops.request import Args
from luzia.errors import BadRequest
from tests.broker.harness import make_model, spec


@pytest.fixture
def broker():
    model = make_model()
    yield model
    model.store.close()


def op(m, name: str, **args):
    return ops.OPS[name](m, Args(args))


def fill(m, n: int = 30) -> list[str]:
    ids = []
    for i in range(n):
        s = spec(user="alice" if i % 2 else "bob", project="web" if i % 3 == 0 else "demo",
                 task=f"task number {i} {'fix_the 100% bug' if i == 7 else ''}")
        intake.accept(m, s)
        ids.append(s.id)
    m.store.commit()
    return ids


def test_pages_follow_one_another_newest_first(broker):
    ids = fill(broker)
    first = op(broker, "jobs.list", limit=10)
    second = op(broker, "jobs.list", limit=10, offset=10)
    last = op(broker, "jobs.list", limit=10, offset=25)
    assert [j["id"] for j in first + second] == ids[::-1][:20]
    assert [j["id"] for j in last] == ids[4::-1]
    assert op(broker, "jobs.list", offset=30) == []
    assert [j["id"] for j in op(broker, "jobs.list")] == ids[::-1]     # as before: no offset
    assert op(broker, "jobs.count") == {"total": 30, "by_state": {"pending": 30}}


def test_filters_combine_and_count_agrees(broker):
    ids = fill(broker)
    mine = op(broker, "jobs.list", user="alice", project="web", limit=100)
    assert {j["user"] for j in mine} == {"alice"} and {j["project"] for j in mine} == {"web"}
    assert op(broker, "jobs.count", user="alice", project="web")["total"] == len(mine) == 5
    # text: a part of the task (LIKE's % and _ are plain characters), or the start of an id
    assert [j["id"] for j in op(broker, "jobs.list", text="100% BUG")] == [ids[7]]
    assert op(broker, "jobs.list", text="fix_the") and not op(broker, "jobs.list", text="fixxthe")
    assert [j["id"] for j in op(broker, "jobs.list", text="%")] == [ids[7]]
    assert [j["id"] for j in op(broker, "jobs.list", text=ids[3][:15])] == [ids[3]]
    assert op(broker, "jobs.list", host="gpu9") == []
    assert op(broker, "jobs.count", host="gpu9") == {"total": 0, "by_state": {}}


def test_count_by_state_ignores_the_state_filter(broker):
    fill(broker, 10)
    op(broker, "queue.flush", user="bob")                    # five killed
    broker.store.commit()
    counted = op(broker, "jobs.count", state=["killed"])
    assert counted == {"total": 5, "by_state": {"pending": 5, "killed": 5}}
    assert {j["state"] for j in op(broker, "jobs.list", state=["killed"])} == {"killed"}


def test_bad_paging_arguments_are_bad_requests(broker):
    with pytest.raises(BadRequest, match="offset"):
        op(broker, "jobs.list", offset=-1)
    with pytest.raises(BadRequest, match="wrong type"):
        op(broker, "jobs.list", host=3)
    with pytest.raises(BadRequest, match="at most"):
        op(broker, "jobs.count", text="x" * 201)
    with pytest.raises(BadRequest, match="unknown state"):
        op(broker, "jobs.count", state=["sleeping"])
    with pytest.raises(BadRequest, match="days"):
        op(broker, "stats", days=0)


def test_stats_by_day_has_every_day(broker):
    fill(broker, 6)
    op(broker, "queue.flush", project="web")                 # two killed today
    broker.store.commit()
    assert "by_day" not in op(broker, "stats")               # only when asked
    rows = op(broker, "stats", days=7)["by_day"]
    assert len(rows) == 7 and rows[-1]["day"] == datetime.date.today().isoformat()
    assert rows[-1]["killed"] == 2 and rows[-1]["jobs"] == 2
    assert all(r["jobs"] == 0 for r in rows[:-1])
    assert [r["day"] for r in rows] == sorted(r["day"] for r in rows)


def test_stats_from_one_pass_agree_with_a_query_per_grouping(broker):
    import random
    import time

    from luzia.broker import accounting
    from luzia.broker.job import Job
    from luzia.states import JobState
    rng = random.Random(5)
    now = time.time()
    for i in range(300):
        started = None if i % 7 == 0 else now - rng.uniform(100, 5000)
        broker.store.insert(Job(
            id=f"101010-{i:012x}", seq=i + 1, project=f"p{i % 4}", user=f"u{i % 5}", task="t",
            priority=2, type="code", timeout=0.0, max_retries=0, workdir="",
            submitted_at=(started or now) - rng.uniform(0, 60),
            state=rng.choice([JobState.COMPLETED, JobState.FAILED, JobState.KILLED]),
            started_at=started, finished_at=(started or now - 50) + rng.uniform(1, 40),
            submitter=None if i % 3 == 0 else f"s{i % 2}"))
    broker.store.commit()
    cases: list[tuple[float | None, dict[str, str | None]]] = [
        (None, {}), (now - 2000, {}), (None, {"user": "u1"}), (now + 9, {})]
    for since, where in cases:
        one = accounting.breakdown(broker.store.db, since, where)
        per: dict[str, Any] = {"by_user": accounting.totals(broker.store.db, "user", since, where),
                               "by_submitter": accounting.totals(broker.store.db, accounting.SUBMITTER,
                                                                 since, where),
                               "by_project": accounting.totals(broker.store.db, "project", since, where),
                               "total": accounting.totals(broker.store.db, None, since, where)[0]}
        assert one.keys() == per.keys()
        for key in per:
            rows_one = one[key] if isinstance(one[key], list) else [one[key]]
            rows_per = per[key] if isinstance(per[key], list) else [per[key]]
            assert [r["name"] for r in rows_one] == [r["name"] for r in rows_per]
            for a, b in zip(rows_one, rows_per, strict=True):
                assert a == pytest.approx(b, abs=0.002)
