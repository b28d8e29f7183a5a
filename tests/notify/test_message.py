"""The text of a notification: what a person needs, and nothing a task could smuggle in."""

from __future__ import annotations

from luzia.notify.events import NotifyEvent
from luzia.notify.message import compose

JOB = {"id": "113754-a2f5c10e9b3d", "project": "overbits", "user": "alice",
       "priority": "high", "host": "gpu1", "attempt": 2, "max_retries": 2, "exit_code": 1,
       "task": "fix the login button\nthen run the tests", "reason": "",
       "metadata": {}, "attempts": [
           {"attempt": 1, "host": "gpu2", "started_at": 1000.0, "finished_at": 1010.0},
           {"attempt": 2, "host": "gpu1", "started_at": 1020.0, "finished_at": 1272.0},
           {"attempt": 3, "host": "gpu1", "started_at": 2000.0, "finished_at": 2100.0}]}


def test_a_failed_job_says_what_ended_how_for_how_long_and_where_to_look():
    msg = compose(NotifyEvent("failed", "k", job=JOB, detail="", at=1272.5))
    assert msg.level == "failure"
    assert msg.title == "luzia: overbits job 113754-a2f5c10e9b3d failed"
    assert msg.body.splitlines() == [
        "task: fix the login button",
        "failed: exit 1 (attempt 2 of 3, on gpu1)",          # the broker's words for an end
        "project overbits · user alice · priority high",
        "run time: 4m12s",                       # the attempt that ended then, not a later one
        "look: luzia jobs 113754-a2f5c10e9b3d"]


def test_cost_and_the_dashboard_link_when_there_are_some():
    job = {**JOB, "cost_usd": 0.4213}
    msg = compose(NotifyEvent("completed", "k", job=job, at=1272.5), link="https://lz.example/jobs/{id}")
    assert msg.level == "success"
    assert "cost: $0.42" in msg.body
    assert msg.body.endswith("look: https://lz.example/jobs/113754-a2f5c10e9b3d")


def test_text_from_a_task_cannot_carry_escapes_or_run_on():
    job = {**JOB, "task": "\x1b[31mred\x1b[0m " + "x" * 500}
    body = compose(NotifyEvent("completed", "k", job=job, at=1272.5)).body
    first = body.splitlines()[0]
    assert "\x1b" not in body and first.startswith("task: red x") and len(first) <= 206


def test_flags_and_the_fleet():
    stalled = compose(NotifyEvent("stalled", "k", job={**JOB, "started_at": 100.0,
                                                      "stalled_since": 400.0}, at=1000.0))
    assert stalled.level == "warning" and stalled.title.endswith(" stalled")
    assert "stalled: no output for 10m00s (attempt 2 of 3, on gpu1)" in stalled.body
    assert "running for: 15m00s" in stalled.body
    asks = compose(NotifyEvent("needs_input", "k", job=JOB, at=1000.0))
    assert asks.title.endswith(" needs input") and "luzia reply 113754-a2f5c10e9b3d" in asks.body
    dead = compose(NotifyEvent("agent_dead", "k", subject="gpu2"))
    assert dead.title == "luzia: agent gpu2 is dead" and "luzia agents status" in dead.body
    full = compose(NotifyEvent("queue_rejecting", "k", detail="100 jobs pending, broker.max_pending = 100"))
    assert full.title == "luzia: the queue is full; submissions are rejected"
    assert full.body.splitlines() == ["100 jobs pending, broker.max_pending = 100",
                                      "look: luzia queue status"]


def test_a_job_the_broker_no_longer_has_still_gets_a_message():
    msg = compose(NotifyEvent("rejected", "k", job={"id": "113754-a2f5c10e9b3d", "project": "p"},
                              detail="queue full (5 pending, max_pending=5)"))
    assert msg.body.splitlines() == ["rejected: queue full (5 pending, max_pending=5)",
                                     "project p", "look: luzia jobs 113754-a2f5c10e9b3d"]


def test_the_link_is_notify_link_else_the_dashboards_job_page_else_none(short_tmp):
    from luzia import config
    from luzia.notify.message import job_link

    def link(text: str) -> str:
        (short_tmp / "luzia.toml").write_text(f'home = "{short_tmp}/h"\n{text}')
        return job_link(config.load(env={"LUZIA_CONFIG": str(short_tmp / "luzia.toml")}))
    assert link("") == ""
    assert link("[web]\nenabled = true\nport = 8470\n") == "http://127.0.0.1:8470/jobs/{id}"
    assert link('[web]\nenabled = true\nurl = "https://lz.example/"\n') == "https://lz.example/jobs/{id}"
    assert link('[web]\nenabled = true\n[notify]\nlink = "https://x/{id}"\n') == "https://x/{id}"


def test_a_paused_job_says_where_it_ran_though_it_holds_no_host_now():
    job = {**JOB, "host": None, "attempt": 1, "max_retries": 0, "state": "pending",
           "attempts": [{"attempt": 1, "host": "gpu2", "started_at": 1000.0, "finished_at": 1010.0}]}
    msg = compose(NotifyEvent("paused", "k", job=job, detail="usage limit until 14:00", at=1010.5))
    assert "(attempt 1, on gpu2)" in msg.body.splitlines()[1]
