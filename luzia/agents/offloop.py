"""Job starts whose files are laid out on threads, off the agent's loop.

A start costs the agent a handful of file creations (the directory, meta.json, the two
reserves, status.json) and the hand-off to the spawner. On a disk other processes keep
busy each creation waits for the filesystem's journal for a millisecond or more, and in the
loop those waits were the agent's ceiling (more than half of its time at 8 slots, while the
broker and the spawner sat idle). On a thread they overlap each other and the loop: a
blocked system call holds no GIL.

The loop keeps every decision: it hands a run's layout to `submit`, is woken (`fileno`)
when one is done, and takes the finished ones with `done`; nothing else touches a run while
it is laid out, and whatever must act on such a run first waits for it (`settle`, a few
milliseconds at most). Only a runner whose start is safe on a thread asks for this
(`Runner.starts_on_threads`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

THREADS = 4      # layouts at once: enough to overlap the journal's waits on two cores


class OffLoop:
    def __init__(self, threads: int = THREADS) -> None:
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="job-layout")
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)
        self.pending: dict[int, tuple[Any, Future]] = {}    # by id(run): a run's layout

    def submit(self, run: Any, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` on a thread for `run`; the loop is woken when it is done."""
        future = self.pool.submit(fn, *args)
        self.pending[id(run)] = (run, future)
        future.add_done_callback(self._wake)

    def busy(self, run: Any) -> bool:
        """Is `run` being laid out (nothing may touch it yet)?"""
        return id(run) in self.pending

    def done(self) -> list[tuple[Any, Future]]:
        """The runs whose layout finished since the last call, each with its future."""
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        finished = [(run, f) for run, f in self.pending.values() if f.done()]
        for run, _ in finished:
            del self.pending[id(run)]
        return finished

    def settle(self, run: Any) -> Future | None:
        """Wait for `run`'s layout to finish and take it (None: it was not being laid out)."""
        entry = self.pending.pop(id(run), None)
        if entry is None:
            return None
        entry[1].exception()        # waits; the caller reads the outcome from the future
        return entry[1]

    def fileno(self) -> int:
        return self.wake_r

    def close(self) -> None:
        """Finish the layouts under way (each hands its job to the runner or fails)."""
        self.pool.shutdown(wait=True)
        if self.wake_w >= 0:
            os.close(self.wake_r)
            os.close(self.wake_w)
            self.wake_r = self.wake_w = -1

    def _wake(self, _future: Future) -> None:
        try:
            os.write(self.wake_w, b"x")
        except (BlockingIOError, OSError):     # already woken (or closing)
            pass
