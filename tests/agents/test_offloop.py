"""Starts laid out on threads (offloop.py): the loop is woken when one is done, takes each
once, and can wait for one before it acts on its run."""

from __future__ import annotations

import select
import threading
from concurrent.futures import Future
from typing import Any

from luzia.agents.offloop import OffLoop


class Job:
    """A run stand-in: OffLoop keys runs by identity."""


def test_a_finished_layout_wakes_the_loop_and_is_taken_once():
    off = OffLoop(threads=2)
    try:
        run = Job()
        off.submit(run, lambda: "session-1")
        assert select.select([off.fileno()], [], [], 30)[0]
        finished: list[tuple[Any, Future]] = []
        while not finished:          # the wake may come just before the future is done
            finished = off.done()
        assert [(r, f.result()) for r, f in finished] == [(run, "session-1")]
        assert not off.busy(run) and off.done() == []
    finally:
        off.close()


def test_settle_waits_for_the_layout_and_takes_it_from_the_loop():
    off = OffLoop(threads=1)
    release = threading.Event()
    try:
        run = Job()
        off.submit(run, lambda: release.wait(30) and "laid out")
        assert off.busy(run)
        threading.Timer(0.05, release.set).start()
        future = off.settle(run)
        assert future is not None and future.result() == "laid out"
        assert not off.busy(run) and off.settle(run) is None and off.done() == []
    finally:
        off.close()


def test_a_failed_layout_is_handed_back_with_its_error():
    off = OffLoop(threads=1)
    try:
        run = Job()

        def fail():
            raise OSError(28, "No space left on device")
        off.submit(run, fail)
        future = off.settle(run)
        assert future is not None and isinstance(future.exception(), OSError)
    finally:
        off.close()
