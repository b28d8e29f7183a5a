"""Delivery through Apprise to a real local HTTP server; the rate limit and the backoff."""

from __future__ import annotations

import queue

import pytest

from luzia.notify.courier import Backoff, Courier, RateLimit, deliver, redacted
from luzia.notify.outbox import Notice
from luzia.states import NoticeState
from tests.helpers import free_ports


def test_deliver_posts_apprise_json_and_says_why_when_it_cannot(webhook):
    assert deliver(webhook.url("a"), "luzia: job x completed", "task: hi", "success") == ""
    assert webhook.messages("a") == [{"version": "1.0", "title": "luzia: job x completed",
                                      "message": "task: hi", "attachments": [], "type": "success"}]
    webhook.status = 500
    assert "error=500" in deliver(webhook.url("a"), "t", "b")
    port, = free_ports(1)
    refused = deliver(f"json://127.0.0.1:{port}/x", "t", "b")
    assert "connection" in refused.lower()
    assert deliver("nosuchscheme://x", "t", "b").startswith("not a valid Apprise URL")


def test_redacted_urls_keep_their_secrets():
    shown = redacted("json://user:hunter2@127.0.0.1:9/hook")
    assert "hunter2" not in shown and shown.startswith("json://user:")
    assert redacted("nosuchscheme://token@x") == "nosuchscheme://…"


def test_a_courier_sends_in_its_own_thread_and_reports(webhook):
    results: queue.Queue = queue.Queue()
    woken = []
    courier = Courier("hook", webhook.url(), results, lambda: woken.append(1))
    notice = Notice(1, "k", "hook", "completed", "title", "body", "info", NoticeState.PENDING, 0, 0.0, 0.0)
    courier.send(notice)
    assert courier.busy
    done = results.get(timeout=20)
    assert (done.target, done.notice, done.error) == ("hook", notice, "") and woken
    courier.stop()


def test_the_rate_limit_allows_a_burst_then_one_per_interval():
    limit = RateLimit(per_minute=2)
    now = limit.at
    for _ in range(2):
        assert limit.ready(now) == 0
        limit.take(now)
    assert limit.ready(now) == pytest.approx(30.0)
    assert limit.ready(now + 30.0) == 0


def test_backoff_doubles_to_its_limit():
    assert [Backoff(2, 300).delay(n) for n in (1, 2, 3, 8, 9, 1000)] == [2, 4, 8, 256, 300, 300]
