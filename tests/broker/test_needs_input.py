"""The broker's side of attention (issue 14) on a model without sockets: an agent's Progress
with `needs_input` becomes the job's flag (memory only), an events row `needs-input` and the
PUB event `job.needs-input`, once per time it begins, and not again for a restart of ours."""

from __future__ import annotations

import time

from luzia import protocol
from luzia.broker import lifecycle, ops
from luzia.broker.agents import AgentHandler
from luzia.broker.ops.request import Args
from luzia.states import NEEDS_INPUT, JobState
from tests.broker.test_lifecycle import join, m, running, topics  # noqa: F401  (fixture)

SCREEN = ["Deleting 3 files.", "Proceed? (y/n)"]


def report(m, job, waiting: bool, lines: list[str] | None = None) -> None:  # noqa: F811
    """The job's agent sends a Progress, as its attention watch does."""
    handler = AgentHandler(m, lambda model, chunk: None)
    handler.progress(m.fleet.get(job.host), protocol.Progress(
        job_id=job.id, attempt=job.attempt, needs_input=waiting,
        needs_input_lines=lines if lines is not None else (SCREEN if waiting else [])))


def rows(m, job_id: str) -> list[tuple[str, str]]:  # noqa: F811
    return [(s, d) for s, d in m.store.db.execute(
        "SELECT state, detail FROM events WHERE job_id=? ORDER BY seq", (job_id,))]


def test_the_flag_goes_up_with_a_row_and_an_event_and_down_with_a_running_row(m):  # noqa: F811
    join(m)
    job = running(m)
    m.out.events.clear()
    report(m, job, True)
    assert job.needs_input and job.needs_input_lines == SCREEN
    assert abs((job.needs_input_since or 0) - time.time()) < 60
    assert rows(m, job.id)[-1] == (NEEDS_INPUT, "Proceed? (y/n)")
    assert topics(m) == ["job.needs-input"] and m.out.events[0][1]["needs_input"] is True
    got = ops.OPS["jobs.get"](m, Args({"id": job.id}))
    assert got["needs_input"] and got["needs_input_lines"] == SCREEN and got["state"] == "running"
    listed = ops.OPS["jobs.list"](m, Args({}))[0]
    assert listed["needs_input"] and "needs_input_lines" not in listed
    report(m, job, True, ["Proceed? (y/n)", "(waiting)"])     # still up: the lines follow
    assert job.needs_input_lines == ["Proceed? (y/n)", "(waiting)"]
    assert [s for s, _ in rows(m, job.id)].count(NEEDS_INPUT) == 1
    report(m, job, False)
    assert not job.needs_input and job.needs_input_since is None and job.needs_input_lines == []
    state, detail = rows(m, job.id)[-1]
    assert state == "running" and detail.startswith("no longer waiting for input (waited ")
    assert topics(m)[-1] == "job.running"
    report(m, job, True)                                      # asked again: a second time
    assert [s for s, _ in rows(m, job.id)].count(NEEDS_INPUT) == 2
    since = ops.OPS["events.since"](m, Args({"after": 0, "states": [NEEDS_INPUT]}))
    assert [e["state"] for e in since["events"]] == [NEEDS_INPUT, NEEDS_INPUT]


def test_a_restart_of_ours_learns_the_flag_again_without_a_second_row(m):  # noqa: F811
    join(m)
    job = running(m)
    report(m, job, True)
    m.store.db.execute("UPDATE events SET at = at - 600 WHERE state = ?", (NEEDS_INPUT,))
    since = (job.needs_input_since or 0) - 600     # it began ten minutes before the restart
    m.store.commit()
    restored = m.store.get(job.id)              # what a restarted broker reads: no flag
    assert restored is not None and not restored.needs_input
    m.jobs[job.id] = restored
    m.out.events.clear()
    report(m, restored, True)                   # its agent's next report
    assert restored.needs_input and abs((restored.needs_input_since or 0) - since) < 1
    assert [s for s, _ in rows(m, job.id)].count(NEEDS_INPUT) == 1
    assert topics(m) == ["job.running"]         # views learn it; no new needs-input event


def test_the_flag_ends_with_its_attempt(m):  # noqa: F811
    join(m)
    job = running(m)
    report(m, job, True)
    lifecycle.end(m, job, 0, "")
    assert job.state is JobState.COMPLETED and not job.needs_input
    assert m.out.events[-1] == ("job.completed", job.summary())
    assert m.out.events[-1][1]["needs_input"] is False


def test_an_old_agent_that_never_says_it_leaves_the_flag_down(m):  # noqa: F811
    join(m)
    job = running(m)
    body = {"job_id": job.id, "attempt": 1, "percent": 50.0}     # a Progress without the fields
    msg = protocol.decode([protocol.VERSION, b"PROGRESS", protocol.pack(body)])
    assert isinstance(msg, protocol.Progress) and msg.needs_input is False
    AgentHandler(m, lambda model, chunk: None).progress(m.fleet.get("gpu1"), msg)
    assert job.progress == 50.0 and not job.needs_input
