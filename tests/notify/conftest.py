"""Fixtures of the notification tests: a fleet of real processes (tests/e2e's make_fleet),
a real Broker stepped in the test's thread (tests/broker's `broker`), and a webhook."""

from __future__ import annotations

import pytest

from tests.broker.test_control_ops import broker  # noqa: F401  (fixtures, offered here)
from tests.e2e.test_fleet_of_one import make_fleet  # noqa: F401
from tests.notify.webhook import Webhook


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()
