"""No-op jobs end to end per second, a process per job: N jobs submitted, a real broker and
one agent with the subprocess runner running `true` on `slots` slots, timed from the first
submission until all are completed. Goal (issue 15): >= 2x the best Python task queue in
the same run (bench/peers.py).

Two ways in, both printed:
- `client`: `luzia.client.submit()` in a loop, as a script does: each call loads the config,
  spools the job with fsync and pushes it on a fresh socket; the client can be the limit.
- `push`: the same Submit frames (built with `client.build`, config loaded once) pushed on
  one PUSH socket, as a long-lived submitter would: the fleet is the limit. This is the
  figure set beside the peers, whose enqueue is one call per job on a warm connection.

Run: .venv/bin/python bench/e2e_jobs.py [jobs] [slots] [client|push|both]
With BENCH_JOBS_DIR=/dev/shm the job directories go to a fresh directory there (the database
stays on the disk): the code's cost without this box's disk, whose ext4 (no journal) spends
0.3-0.7 ms of kernel CPU choosing each new inode in /tmp (BENCHMARKS.md, branch `e2e`).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable

from _common import start_one_agent, temp_fleet  # type: ignore[attr-defined]

WARMUP = 50      # jobs run first, untimed: the spawner and the caches are up


def fleet_config(slots: int) -> str:
    # cpu_ceiling 1.0: on this shared 2-core box the default 80 % would stop placement
    # whenever the jobs themselves (or another's work) keep the cores busy
    return (f'[broker]\nheartbeat_interval = 0.2\n[scheduler]\nper_user = false\n'
            f'max_per_project = 0\ncpu_ceiling = 1.0\n[agent]\nslots = {slots}\n'
            f'runner = "subprocess"\ncommand = ["true"]\n')


def client_submitter() -> Callable[[str], None]:
    from luzia import client
    return lambda task: client.submit("demo", task)


def push_submitter() -> Callable[[str], None]:
    import zmq

    from luzia import client, protocol
    from luzia.config import load
    cfg = load()
    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.connect(cfg.endpoints.submit)
    return lambda task: sock.send_multipart(protocol.encode(protocol.Submit(
        job=client.build("demo", task, cfg=cfg))))


def completed(fleet) -> int:
    return fleet.control("status", timeout=10)["jobs"].get("completed", 0)


class CpuMeter:
    """CPU seconds (user + system) of the broker, the agent, what the agent reaped, and the
    agent's spawner with the commands it reaped: where a job's cost goes."""

    def __init__(self, fleet) -> None:
        import psutil
        self.procs = {name: psutil.Process(fleet.procs[name].pid)
                      for name in ("broker", "agent-local")}
        self.psutil = psutil
        self.start = self.read()

    def spawner(self):
        for proc in self.procs["agent-local"].children():
            try:
                if any(a.endswith("spawner.py") for a in proc.cmdline()):
                    return proc
            except self.psutil.Error:     # a wrapper that just ended (before the spawner)
                continue
        return None

    def read(self) -> dict[str, float]:
        out = {}
        for name, proc in self.procs.items():
            t = proc.cpu_times()
            out[name] = t.user + t.system
            # the kernel's part: on this box most of it is ext4 choosing an inode for each
            # file a job creates (BENCHMARKS.md, branch `e2e`)
            out[f"{name} (kernel)"] = t.system
        # what the agent reaped: the per-job wrappers and their commands before the spawner
        out["agent's children"] = t.children_user + t.children_system
        spawner = self.spawner()
        t = spawner.cpu_times() if spawner else None
        out["spawner"] = t.user + t.system if t else 0.0
        out["commands"] = t.children_user + t.children_system if t else 0.0
        return out

    def per_job(self, n: int) -> dict[str, float]:
        """ms of CPU per job since the start, by process."""
        end = self.read()
        return {k: (end[k] - self.start[k]) / n * 1000 for k in end}


def run(fleet, submit: Callable[[str], None], n: int, done_before: int) -> tuple[float, float]:
    """Submit n jobs; seconds until all completed, seconds the submitting took."""
    t0 = time.perf_counter()
    for i in range(n):
        submit(f"noop {i}")
    submitted = time.perf_counter() - t0
    while completed(fleet) < done_before + n:
        time.sleep(0.01)  # polling step
    return time.perf_counter() - t0, submitted


def main(n: int = 300, slots: int = 8, how: str = "both") -> dict[str, float]:
    env = {"LUZIA_MAX_JOBS": "100000"}
    if os.environ.get("BENCH_JOBS_DIR"):
        jobs = tempfile.mkdtemp(prefix="lzj", dir=os.environ["BENCH_JOBS_DIR"])
        atexit.register(shutil.rmtree, jobs, True)
        env["LUZIA_JOBS_DIR"] = jobs
    fleet = temp_fleet(fleet_config(slots), **env)
    res: dict[str, float] = {"slots": slots}
    try:
        start_one_agent(fleet)
        done = 0
        for way in ("push", "client") if how == "both" else (how,):
            submit = push_submitter() if way == "push" else client_submitter()
            run(fleet, submit, WARMUP, done)
            done += WARMUP
            meter = CpuMeter(fleet)
            elapsed, submitted = run(fleet, submit, n, done)
            done += n
            cpu = meter.per_job(n)
            res[f"{way}_jobs_per_s"] = n / elapsed
            res[f"{way}_submit_per_s"] = n / submitted
            print(f"end to end ({way}): {n} no-op jobs on {slots} slots (subprocess runner) in "
                  f"{elapsed:.2f}s = {n / elapsed:.1f} jobs/s (submitting alone: "
                  f"{n / submitted:.0f}/s); CPU per job: " +
                  ", ".join(f"{k} {v:.2f} ms" for k, v in cpu.items()))
    finally:
        fleet.close()
    res["jobs_per_s"] = res.get("push_jobs_per_s", res.get("client_jobs_per_s", 0.0))
    return res


if __name__ == "__main__":
    args = sys.argv[1:]
    main(*(int(a) for a in args[:2]), *args[2:3])
