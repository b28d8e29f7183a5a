"""Fixtures of the notification tests: a fleet of real processes (tests/e2e's make_fleet)
and a webhook."""

from __future__ import annotations

import pytest

from tests.notify.webhook import Webhook


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()
