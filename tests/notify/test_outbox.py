"""The notifier's database: one notification per event and target, the cursor, episodes."""

from __future__ import annotations

import pytest

from luzia.errors import IllegalTransition, StateDirError
from luzia.notify.outbox import Outbox
from luzia.states import NoticeState


@pytest.fixture
def box(tmp_path):
    outbox = Outbox(tmp_path / "notify.db")
    yield outbox
    outbox.close()


def add(box: Outbox, key: str, target: str = "ops", now: float = 100.0) -> bool:
    with box.transaction():
        return box.add(key, target, "failed", "t", "b", "failure", now)


def test_an_event_is_one_notification_per_target_however_often_it_is_seen(box):
    assert add(box, "job/a/failed/7") and add(box, "job/a/failed/7", "me")
    assert not add(box, "job/a/failed/7")
    assert box.known("job/a/failed/7") and not box.known("job/b/failed/8")
    assert box.keys() == [("job/a/failed/7", "ops", "pending"), ("job/a/failed/7", "me", "pending")]


def test_the_cursor_moves_with_its_notifications_or_not_at_all(box, tmp_path):
    assert box.cursor() is None
    with pytest.raises(RuntimeError):
        with box.transaction():
            box.add("job/a/completed/3", "ops", "completed", "t", "b", "success", 1.0)
            box.set_cursor(3)
            raise RuntimeError("killed half way")
    assert box.cursor() is None and box.keys() == []
    with box.transaction():
        box.add("job/a/completed/3", "ops", "completed", "t", "b", "success", 1.0)
        box.set_cursor(3)
    again = Outbox(tmp_path / "notify.db")
    assert again.cursor() == 3 and len(again.keys()) == 1
    again.close()


def test_delivery_order_retries_and_give_ups(box):
    add(box, "k1", now=100.0)
    add(box, "k2", now=101.0)
    first = box.next_for("ops", 200.0)
    assert first is not None and first.key == "k1"
    with box.transaction():
        box.retry(first, due=300.0, error="connection refused")
    assert first.tries == 1 and box.next_for("ops", 200.0).key == "k2"   # the other goes first
    assert box.next_due() == 101.0
    with box.transaction():
        box.sent(box.next_for("ops", 200.0), 200.0)
    assert box.next_for("ops", 299.0) is None and box.next_due() == 300.0
    assert [n.key for n in box.expired(before=100.5)] == ["k1"]
    with box.transaction():
        box.failed(first, 400.0, "connection refused")
    with pytest.raises(IllegalTransition):
        box.sent(first, 401.0)
    counts = box.counts()["ops"]
    assert (counts["pending"], counts["sent"], counts["failed"]) == (0, 1, 1)
    assert counts["last_sent"] == 200.0 and counts["last_error"] == "connection refused"
    with box.transaction():
        assert box.prune(before=300.0) == 1          # the sent one; the failed one is newer
    assert [k for k, _, _ in box.keys()] == ["k1"]
    assert first.state is NoticeState.FAILED


def test_a_condition_is_told_once_per_episode(box):
    with box.transaction():
        assert box.observe("agent_dead/gpu1", True, 1.0) == 1
        assert box.observe("agent_dead/gpu1", True, 2.0) == 0      # still dead: the same episode
        assert box.observe("agent_dead/gpu1", False, 3.0) == 0
        assert box.observe("agent_dead/gpu1", True, 4.0) == 2      # dead again: a new one
        assert box.observe("agent_dead/gpu2", False, 4.0) == 0


def test_reading_a_database_that_is_not_there_is_an_error(tmp_path):
    with pytest.raises(StateDirError, match="no notifier database"):
        Outbox(tmp_path / "none.db", create=False)
