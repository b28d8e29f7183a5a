"""A job whose command never started is retried by Luzia, not failed (issue 17, item 4).

A real tmux that cannot start a session: the agent's TMUX_TMPDIR is a plain file, so tmux
cannot make its socket directory ("couldn't create directory ... Not a directory"), as a
tmux server exiting under a new session fails it. While it lasts, each attempt ends "never
started" and the job goes back to pending after a backoff without using its retries; once
tmux works again the job runs and completes. A host that never starts anything fails each
job after a few such attempts, saying so, instead of looping for ever."""

from __future__ import annotations

from pathlib import Path

from luzia.broker.lifecycle import NEVER_STARTED, NEVER_STARTED_MAX
from tests.fleet import LocalFleet, fleet_config
from tests.helpers import wait_for


def broken_tmux_fleet(make_fleet, short_tmp) -> tuple[LocalFleet, Path]:
    tmpdir = short_tmp / "tmuxdir"
    tmpdir.write_text("a file where tmux wants its socket directory")
    # retries 0.1 s doubling, not 1 s: the backoff is the rule's, not the point here
    fleet = make_fleet(fleet_config('runner = "tmux"', broker="retry_initial = 0.1"))
    fleet.start_broker()
    fleet.start_agent("a", env={"TMUX_TMPDIR": str(tmpdir)})
    wait_for(lambda: fleet.live_agents() == {"a"}, 30)
    return fleet, tmpdir


def unstarted(job: dict) -> list[dict]:
    return [a for a in job.get("attempts", []) if a["reason"].startswith(NEVER_STARTED)]


def test_a_job_that_never_started_is_retried_without_using_its_retries(make_fleet, short_tmp):
    fleet, tmpdir = broken_tmux_fleet(make_fleet, short_tmp)
    job_id = fleet.submit("demo", "hello")       # max_retries 0: one failure would end it
    wait_for(lambda: unstarted(fleet.job(job_id)), 60, message="an attempt that never started")
    first = unstarted(fleet.job(job_id))[0]
    assert "tmux" in first["reason"] and first["host"] == "a", first
    assert fleet.state(job_id) in ("pending", "assigned")

    tmpdir.unlink()                              # tmux can start sessions again
    tmpdir.mkdir(mode=0o700)
    wait_for(lambda: fleet.state(job_id) == "completed", 90)
    job = fleet.job(job_id)
    assert job["retries"] == 0 and job["attempt"] >= 2, job
    assert fleet.live_agents() == {"a"}


def test_a_host_that_never_starts_anything_fails_the_job_after_a_few_tries(make_fleet, short_tmp):
    fleet, _ = broken_tmux_fleet(make_fleet, short_tmp)
    job_id = fleet.submit("demo", "hello", "--max-retries", "3")
    wait_for(lambda: fleet.state(job_id) == "failed", 120)
    job = fleet.job(job_id)
    assert len(unstarted(job)) == NEVER_STARTED_MAX, job["attempts"]
    assert job["attempt"] == NEVER_STARTED_MAX and job["retries"] == 0, job
    assert job["reason"].startswith(NEVER_STARTED) and "tmux" in job["reason"], job
    assert fleet.live_agents() == {"a"}
