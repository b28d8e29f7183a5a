"""Fixtures of the broker tests: a short state dir, a broker stepped by the test, a context."""

from __future__ import annotations

import pytest
import zmq

from tests.broker.harness import make_broker


@pytest.fixture
def home(short_tmp):
    return short_tmp / "h"


@pytest.fixture
def broker(home):
    home.mkdir()
    b = make_broker(home)
    yield b
    b.close()


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)
