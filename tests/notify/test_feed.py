"""From the broker's events to the outbox, on the broker's real model and control ops
(called in-process, no sockets): the cursor, rules, pages, a new job database, flags; and
the events.since op itself."""

from __future__ import annotations

import pytest

from luzia.broker import intake, lifecycle, ops
from luzia.broker.ops.request import Args
from luzia.errors import BadRequest
from luzia.notify import feed as feed_module
from luzia.notify.events import Rules
from luzia.notify.feed import Feed
from luzia.notify.outbox import Outbox
from luzia.notifyconf import NotifyConfig, NotifyRule
from tests.broker.harness import make_model, spec


class InProcess:
    """The broker's control ops, called as its socket would call them."""

    def __init__(self, m) -> None:
        self.m = m

    def call(self, op: str, timeout: float | None = None, **args):
        result = ops.OPS[op](self.m, Args(args))
        self.m.store.commit()
        return result


@pytest.fixture
def broker():
    m = make_model()
    yield m
    m.store.close()


def make_feed(b, tmp_path, rules: list[NotifyRule]) -> Feed:
    cfg = NotifyConfig(targets={"ops": "json://x/", "me": "json://y/"}, rules=rules)
    return Feed(Outbox(tmp_path / "notify.db"), Rules(cfg), InProcess(b))


def killed(m, **kw) -> str:
    job = intake.accept(m, spec(**kw))
    assert job is not None
    lifecycle.cancel(m, job)
    m.store.commit()
    return job.id


def test_ends_since_the_first_start_are_told_once_by_the_rules(broker, tmp_path):
    history = killed(broker)
    feed = make_feed(broker, tmp_path, [NotifyRule(events=["killed"], targets=["ops"]),
                                        NotifyRule(events=["killed"], targets=["me"],
                                                   projects=["overbits"])])
    feed.catch_up()                                # the first start: what was, was
    assert feed.outbox.keys() == [] and (feed.outbox.cursor() or 0) > 0
    mine, theirs = killed(broker, project="overbits"), killed(broker, user="bob")
    feed.catch_up()
    keys = feed.outbox.keys()
    assert sorted((k.split("/")[1], t) for k, t, _ in keys) == sorted(
        [(mine, "ops"), (mine, "me"), (theirs, "ops")])
    assert history not in str(keys)
    feed.catch_up()                                # nothing new: nothing added
    assert feed.outbox.keys() == keys
    notice = feed.outbox.next_for("me", 1e12)
    assert notice is not None and notice.title == f"luzia: overbits job {mine} killed"
    assert "killed: cancelled" in notice.body


def test_pages_and_a_new_job_database(broker, tmp_path, monkeypatch):
    monkeypatch.setattr(feed_module, "BATCH", 2)
    feed = make_feed(broker, tmp_path, [NotifyRule(events=["killed"], targets=["ops"])])
    feed.catch_up()
    ids = [killed(broker) for _ in range(5)]
    assert feed.catch_up(pages=2) is True            # 4 of 5 read: the loop gets a turn
    assert feed.catch_up() is False
    assert [k.split("/")[1] for k, _, _ in feed.outbox.keys()] == ids
    # the broker now has another database, whose events end before our cursor: read it all
    other = make_model()
    try:
        fresh = killed(other)
        feed.broker = InProcess(other)
        feed.catch_up()
        assert fresh in feed.outbox.keys()[-1][0]
    finally:
        other.store.close()


def test_events_since_pages_filters_and_keeps_its_high_water_mark(broker):
    ops = InProcess(broker)
    start = ops.call("events.since")["last"]
    ids = [killed(broker) for _ in range(3)]
    page = ops.call("events.since", after=start, states=["killed"], limit=2)
    assert [e["job_id"] for e in page["events"]] == ids[:2] and page["more"]
    assert page["events"][0].keys() == {"seq", "at", "job_id", "state", "detail", "project", "user"}
    rest = ops.call("events.since", after=page["last"], states=["killed"])
    assert [e["job_id"] for e in rest["events"]] == ids[2:] and not rest["more"]
    everything = ops.call("events.since", after=start)       # all states: pending rows too
    assert {e["state"] for e in everything["events"]} == {"pending", "killed"}
    assert rest["last"] == everything["last"]
    # a state this broker does not know (yet) has no rows, and is no error; none asked: none
    for states in (["paused"], []):
        assert ops.call("events.since", after=start, states=states) == {
            "events": [], "last": rest["last"], "more": False}
    broker.store.prune(0)                          # every finished job, and its rows, gone
    assert ops.call("events.since", after=0) == {"events": [], "last": rest["last"], "more": False}
    for bad in ({"limit": 0}, {"limit": 1001}, {"after": -1}, {"after": "x"}):
        with pytest.raises(BadRequest):
            ops.call("events.since", **bad)


def waiting(m, lines: list[str], **kw):
    """A job running on gpu1 whose agent says its pane waits for a person."""
    from tests.broker.test_lifecycle import dispatch, join
    if m.fleet.get("gpu1") is None:
        join(m, "gpu1", slots=8)
    job = intake.accept(m, spec(**kw))
    assert job is not None and dispatch(m) == [job.id]
    lifecycle.start(m, job, "started on gpu1")
    lifecycle.needs_input(m, job, True, lines)
    m.store.commit()
    return job


def test_a_job_that_waits_for_a_person_is_told_each_time_it_begins(broker, tmp_path):
    """needs-input is a row of the events table (events.since), like an end: one
    notification per time a job begins to wait, with what its pane shows."""
    feed = make_feed(broker, tmp_path, [NotifyRule(events=["needs-input"], targets=["me"],
                                                   users=["alice"])])
    feed.catch_up()                                           # the first start
    job = waiting(broker, ["Deleting 3 files.", "Proceed? (y/n)"], user="alice",
                  task="clean up\nthe build")
    other = waiting(broker, ["Proceed? (y/n)"], user="bob")
    summary = broker.out.events[-1][1]
    assert broker.out.events[-1][0] == "job.needs-input" and summary["needs_input"] is True
    assert feed.on_event("job.needs-input", summary) is True   # a catch-up is due
    assert feed.on_event("job.running", summary) is False
    assert feed.catch_up() is False
    keys = [k for k, _, _ in feed.outbox.keys()]
    assert len(keys) == 1 and keys[0].startswith(f"job/{job.id}/needs-input/")
    assert other.id not in keys[0]
    notice = feed.outbox.next_for("me", 1e12)
    assert notice is not None and notice.title.endswith(f"job {job.id} needs input")
    assert "task: clean up" in notice.body and f"luzia reply {job.id}" in notice.body
    assert "its screen:\n  Deleting 3 files.\n  Proceed? (y/n)" in notice.body
    feed.catch_up()
    assert len(feed.outbox.keys()) == 1                        # read again: nothing new
    lifecycle.needs_input(broker, job, False, [])             # answered ...
    lifecycle.needs_input(broker, job, True, ["Really? (y/n)"])   # ... and asked again
    broker.store.commit()
    feed.catch_up()
    assert len(feed.outbox.keys()) == 2


def test_a_wait_read_after_its_job_ended_is_not_told(broker, tmp_path):
    feed = make_feed(broker, tmp_path, [NotifyRule(events=["needs_input"], targets=["me"])])
    feed.catch_up()
    job = waiting(broker, ["Proceed? (y/n)"])
    lifecycle.end(broker, job, 0, "")           # answered and done while the notifier was away
    broker.store.commit()
    feed.catch_up()
    assert feed.outbox.keys() == []


def test_without_rules_for_ends_the_cursor_still_moves(broker, tmp_path):
    """A rule for ends added later tells what happens from then on, not the backlog."""
    feed = make_feed(broker, tmp_path, [NotifyRule(events=["stalled"], targets=["ops"])])
    feed.catch_up()
    killed(broker)
    feed.catch_up()
    assert feed.outbox.keys() == []
    assert feed.outbox.cursor() == InProcess(broker).call("events.since")["last"]
