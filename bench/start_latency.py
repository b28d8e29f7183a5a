"""Submit -> agent command running, on an idle fleet: the time from just before
`client.submit()` to the first thing the agent command does, one job at a time.

The agent command is `bash -c` printing the job id and $EPOCHREALTIME (the wall clock, as
time.time() is) to a file: bash's own start (~2 ms) counts as part of "running", nothing
after it does. The submit time is taken just before the client call, which loads the
config, spools the job with fsync and pushes it. Each job runs alone and is completed
before the next is submitted. Goal (issue 15): p50 <= 15 ms, p99 <= 50 ms.

Run: .venv/bin/python bench/start_latency.py [jobs] [auto|tmux|subprocess] [--phases]

--phases also prints where the time went, p50 of each step, from the job directory's files:
submit -> meta.json written (client, broker, the agent's assign and layout), -> pid written
(the runner's start, the tracker's fork, its write after it), -> the command's stamp (exec
and bash, less what overlapped the pid's write). File times: a few ms coarse at worst.
"""

from __future__ import annotations

import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from _common import median, pct, start_one_agent, temp_dir, temp_fleet

from tests.helpers import kill_tmux_server

# a TOML literal string: bash receives the printf format with its \n
STAMP = 'printf "%s %s\\n" "$1" "$EPOCHREALTIME" >> "$2"'
IDLE_GAP = 0.1      # seconds between one job's completion and the next submit
WARMUP = 3


def stamped(path: Path, job_id: str, timeout: float = 30) -> float:
    """The start time the command wrote for `job_id` (polls the file; a stat is cheap)."""
    deadline = time.monotonic() + timeout
    size = 0
    while time.monotonic() < deadline:
        try:
            now = path.stat().st_size
        except FileNotFoundError:
            now = 0
        if now != size:
            size = now
            for line in path.read_text().splitlines():
                jid, _, when = line.partition(" ")
                if jid == job_id:
                    return float(when)
        time.sleep(0.001)  # polling step
    raise TimeoutError(f"job {job_id}'s command did not start within {timeout}s")


def phases(home: Path, job_id: str, t0: float, started: float) -> tuple[float, float, float]:
    """(submit -> laid out, laid out -> pid written, pid written -> stamp) in seconds, from
    the mtimes of meta.json and `process` (its last write: the pid's while the command runs)."""
    from luzia.jobstatus import read_pid
    job = home / "jobs" / job_id
    laid = (job / "meta.json").stat().st_mtime
    deadline = time.monotonic() + 10
    while not read_pid(job) and time.monotonic() < deadline:
        time.sleep(0.001)  # polling step: the tracker writes it just after its fork
    pid = (job / "process").stat().st_mtime
    return laid - t0, pid - laid, started - pid


def main(n: int = 200, runner: str = "auto", show_phases: bool = False) -> dict[str, Any]:
    if runner == "auto":
        runner = "tmux" if shutil.which("tmux") else "subprocess"
    socket = f"lzb{uuid.uuid4().hex[:8]}" if runner == "tmux" else ""
    stamps = temp_dir("lzs") / "starts"
    # cpu_ceiling 1.0: other work on a shared box would keep the agent over the default 80 %
    fleet = temp_fleet(f"[scheduler]\ncpu_ceiling = 1.0\n[agent]\nrunner = \"{runner}\"\n"
                       f"tmux_socket = \"{socket or 'luzia'}\"\n"
                       f"command = [\"bash\", \"-c\", '{STAMP}', \"stamp\", \"{{job_id}}\", "
                       f"\"{stamps}\"]\n")
    try:
        start_one_agent(fleet)
        from luzia import client
        latencies, calls, steps = [], [], []
        for i in range(WARMUP + n):
            time.sleep(IDLE_GAP)
            t0 = time.time()
            job_id = client.submit("demo", f"latency {i}")
            returned = time.time()
            started = stamped(stamps, job_id)
            if i >= WARMUP:
                latencies.append(started - t0)
                calls.append(returned - t0)
                if show_phases:
                    steps.append(phases(Path(fleet.home), job_id, t0, started))
            while fleet.state(job_id) != "completed":
                time.sleep(0.01)  # polling step
    finally:
        fleet.close()
        if socket:
            kill_tmux_server(socket)
    res = {"p50_ms": median(latencies) * 1000, "p99_ms": pct(latencies, 99) * 1000,
           "max_ms": max(latencies) * 1000, "call_ms": median(calls) * 1000, "runner": runner,
           "n": n}
    print(f"submit -> command running ({runner} runner, idle fleet, {n} jobs one at a time): "
          f"p50 {res['p50_ms']:.1f} ms, p99 {res['p99_ms']:.1f} ms, max {res['max_ms']:.1f} ms "
          f"(goal p50 <= 15 ms, p99 <= 50 ms); the client call itself p50 {res['call_ms']:.1f} ms")
    if steps:
        p50s = [median([s[i] for s in steps]) * 1000 for i in range(3)]
        res["phases_ms"] = p50s
        laid, pid, stamp = p50s
        print(f"  p50 of each step: submit -> laid out {laid:.1f} ms, -> pid written "
              f"{pid:.1f} ms, -> command's stamp {stamp:.1f} ms")
    return res


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--phases"]
    main(int(args[0]) if args else 200, *(args[1:2] or ["auto"]), show_phases="--phases" in sys.argv)
