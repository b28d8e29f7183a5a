"""Helpers for tests: wait_for() polls a condition with a deadline (tests never sleep to wait)."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# the first port the kernel hands out for bind(0) and outgoing connections; ports below it
# are only ever taken by someone who names them
_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
PORTS_FROM = 20000

# Hypothesis profiles (registered in tests/conftest.py): `quick` for every run of `make test`,
# `thorough` with HYPOTHESIS_PROFILE=thorough (tests/README.md). No deadline in either: a
# property test checks answers, and a loaded box must not fail it on time.
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "quick")
QUICK_SHARE = 10          # the quick profile tries a tenth of a property test's examples


def examples(thorough: int) -> int:
    """How many examples (or seeds) a property test tries: `thorough` in the thorough
    profile, a tenth of it (at least 10) in the quick one."""
    return thorough if HYPOTHESIS_PROFILE == "thorough" else max(10, thorough // QUICK_SHARE)


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


def wait_for_count(count: Callable[[], int], target: int, stall: float = 60.0,
                   interval: float = 0.05, message: str = "") -> None:
    """Poll `count()` until it reaches `target`; fail when it has not grown for `stall` s.

    For a test that runs many real jobs: the box's load sets their pace (speed is measured
    in bench/, not asserted here), so the deadline is on progress, not on the total."""
    best, moved = -1, time.monotonic()
    while True:
        value = count()
        if value >= target:
            return
        if value > best:
            best, moved = value, time.monotonic()
        elif time.monotonic() - moved > stall:
            raise AssertionError(f"stuck at {best} of {target} for {stall}s: {message or count}")
        time.sleep(interval)  # polling step, not a wait for an event


def free_ports(n: int) -> list[int]:
    """n tcp ports free right now on 127.0.0.1, for configs that must name them before the
    broker binds (the broker cannot bind port 0 and report it).

    Drawn at random from below the kernel's ephemeral range, so no bind(0) and no outgoing
    connection (of this suite's parallel workers or anyone else) takes one before the broker
    binds it; only another caller drawing the same port in the same moment could."""
    try:
        low = int(_EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    candidates = random.SystemRandom().sample(range(PORTS_FROM, max(low, PORTS_FROM + 1000)), 64)
    ports: list[int] = []
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == n:
            return ports
    raise RuntimeError(f"no {n} free ports below {low}")


def printed_id(out: subprocess.CompletedProcess) -> str:
    """The job id a successful `luzia PROJECT TASK` printed (agent:PROJECT:ID)."""
    assert out.returncode == 0, out.stderr.decode()
    line = out.stdout.decode().strip()
    assert line.startswith("agent:"), line
    return line.rsplit(":", 1)[1]


def kill_tmux_server(name: str) -> None:
    """End the private tmux server `name` (tmux -L) and remove its socket file: a server
    killed with its last session, or by kill-server, may leave the file, and thousands of
    them make every `tmux -L` lookup on this host slower; so may the `NAME.lock` tmux
    holds while a server starts, when the server is killed in its start."""
    subprocess.run(["tmux", "-L", name, "kill-server"], capture_output=True)
    tmpdir = os.environ.get("TMUX_TMPDIR") or "/tmp"
    for leftover in (name, f"{name}.lock"):
        Path(tmpdir, f"tmux-{os.getuid()}", leftover).unlink(missing_ok=True)


def kill_jobs(jobs_dir: Path) -> None:
    """End the jobs left running under `jobs_dir` (each job's process group, from the pid
    its tracker recorded): a job outlives its agent by design, so a test that stops would
    leave them behind."""
    from luzia.jobstatus import read_pid
    for job_dir in Path(jobs_dir).glob("*/"):
        pid = read_pid(job_dir)
        if pid <= 1:
            continue
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass
