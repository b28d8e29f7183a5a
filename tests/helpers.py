"""Helpers for tests: wait_for() polls a condition with a deadline (tests never sleep to wait)."""

from __future__ import annotations

import socket
import subprocess
import time
from typing import Any, Callable


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01,
             message: str = "") -> Any:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")
        time.sleep(interval)  # polling step, not a wait for an event


def free_ports(n: int) -> list[int]:
    """n tcp ports free right now on 127.0.0.1, for configs that must name them before the
    broker binds (a test may lose a race here; the kernel rarely reuses them this soon)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def printed_id(out: subprocess.CompletedProcess) -> str:
    """The job id a successful `luzia PROJECT TASK` printed (agent:PROJECT:ID)."""
    assert out.returncode == 0, out.stderr.decode()
    line = out.stdout.decode().strip()
    assert line.startswith("agent:"), line
    return line.rsplit(":", 1)[1]
