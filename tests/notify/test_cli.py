"""`luzia notify test|status` as a person runs them (the real CLI in a subprocess)."""

from __future__ import annotations

import json

from tests.fleet import LocalFleet
from tests.helpers import free_ports
from tests.notify.rig import notify_config


def test_notify_test_sends_or_says_why_and_status_without_a_notifier(short_tmp, webhook):
    dead, = free_ports(1)
    fleet = LocalFleet(short_tmp / "f", notify_config(
        {"team": webhook.url("team"), "pager": f"json://127.0.0.1:{dead}/page"},
        [(["failed"], ["team", "pager"])]))
    try:
        out = fleet.cli("notify", "test", "team")
        assert out.returncode == 0, out.stderr
        assert out.stdout.decode() == f"sent a test message to json://127.0.0.1:{webhook.port}/team\n"
        sent, = webhook.messages("team")
        assert sent["title"] == "luzia: test notification" and "target team works" in sent["message"]

        out = fleet.cli("notify", "test", "pager")
        assert out.returncode == 1
        assert out.stderr.decode().startswith(f"luzia: json://127.0.0.1:{dead}/page did not take "
                                              "the test message: A Connection error occurred")
        out = fleet.cli("notify", "test", "pager", "--json")
        assert out.returncode == 1 and json.loads(out.stdout)["sent"] is False
        out = fleet.cli("notify", "test", webhook.url("direct"))        # a URL, not a name
        assert out.returncode == 0 and len(webhook.messages("direct")) == 1
        before = len(webhook.messages())
        out = fleet.cli("notify", "test", "team", "--dry-run")
        assert out.returncode == 0 and out.stdout.decode().startswith("would send a test message to ")
        out = fleet.cli("notify", "test", "nosuchscheme://x", "--dry-run")
        assert out.returncode == 1 and b"not a valid Apprise URL" in out.stderr
        assert len(webhook.messages()) == before                      # a dry run sends nothing
        out = fleet.cli("notify", "test", "nobody")
        assert out.returncode == 2
        assert out.stderr == b"luzia: no target 'nobody' in [notify.targets] (known: pager, team); " \
                             b"or give an Apprise URL\n"

        out = fleet.cli("notify", "status")                            # nothing has run here
        assert out.returncode == 3 and b"luzia-notify not reachable" in out.stderr
    finally:
        fleet.close()


def test_status_without_rules_says_nothing_is_notified(short_tmp):
    fleet = LocalFleet(short_tmp / "f")
    try:
        out = fleet.cli("notify", "status")
        assert out.returncode == 0 and out.stdout.decode().startswith("no [notify] rules in ")
        assert json.loads(fleet.cli("notify", "status", "--json").stdout) == {
            "running": False, "rules": 0, "targets": []}
    finally:
        fleet.close()
