"""Luzia next to RQ, Celery and Dramatiq on the same no-op workload, in one run.

Each peer gets a redis-server this script starts on a free loopback port (no persistence),
2 worker processes, and the same three measurements as Luzia:
- enqueue rate: one process enqueuing N jobs one call at a time, no worker running;
- end to end: workers up, N jobs enqueued, timed until the last has run (each job counts
  itself done with one INCR);
- one-shot enqueue from a fresh process (import, connect, enqueue one, exit), p50,
  interleaved with `luzia demo x` and the floors so all see the same machine load.
Luzia's own figures are measured in the same run (bench/ scripts, its own venv). The peers
live in their own venv (`make bench-peers` makes bench/.venv-peers from
bench/peers-requirements.txt); they are never a dependency of Luzia.

Run: .venv/bin/python bench/peers.py [--python bench/.venv-peers/bin/python]
                                      [--jobs 1000] [--enqueue 5000] [--runs 20] [--slots 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
APPS = HERE / "peer_apps"
PEERS = {"rq": "RQ", "celery": "Celery", "dramatiq": "Dramatiq"}

sys.path.insert(0, str(HERE))
from _common import PY, load, machine, median, startup_times, temp_fleet  # noqa: E402
from floors import IMPORTS, PASS, spawn_rate  # noqa: E402

from tests.helpers import free_ports  # noqa: E402


class Redis:
    """A private redis-server: loopback only, no RDB, no AOF. The port is probed free and
    bound by redis a moment later; if another process took it meanwhile, try another."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="lzredis", dir="/tmp")
        for _ in range(5):
            self.port = free_ports(1)[0]
            self.proc = subprocess.Popen(
                ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                 "--appendonly", "no", "--dir", self.dir, "--loglevel", "warning"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._up():
                return
            self.close()
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, *words: str) -> str:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall((" ".join(words) + "\r\n").encode())
            return s.recv(4096).decode().strip()

    def _up(self) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if self.command("PING") == "+PONG":
                    return True
            except OSError:
                pass
            time.sleep(0.05)  # polling step
        return False

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def missing(python: str) -> str:
    """Why the peers cannot run here, or "" when they can."""
    if not shutil.which("redis-server"):
        return "redis-server not found (Debian: apt-get install redis-server)"
    if not Path(python).exists():
        return f"{python} not found (`make bench-peers` creates it)"
    probe = subprocess.run([python, "-c", "import redis, rq, celery, dramatiq"],
                           capture_output=True, text=True)
    if probe.returncode:
        return f"the peer packages are missing in {python} ({probe.stderr.strip().splitlines()[-1]})"
    return ""


class Peers:
    def __init__(self, python: str, redis: Redis) -> None:
        self.python, self.redis = python, redis
        self.env = {**os.environ, "BENCH_REDIS_URL": redis.url, "PYTHONPATH": str(APPS)}

    def driver(self, name: str, what: str, n: int = 0) -> str:
        self.redis.command("FLUSHALL")
        out = subprocess.run([self.python, str(APPS / "driver.py"), name, what, str(n)],
                             env=self.env, cwd=APPS, capture_output=True, text=True, timeout=900)
        if out.returncode:
            raise RuntimeError(f"{name} {what}: {out.stderr.strip()[-500:]}")
        return out.stdout.strip()

    def one_shot_argv(self, name: str) -> list[str]:
        return [self.python, "-c", f"import {name}_app; {name}_app.enqueue_one()"]

    def end_to_end(self, name: str, n: int) -> float:
        argvs = json.loads(self.driver(name, "workers"))
        log = open(Path(self.redis.dir) / f"{name}-workers.log", "ab")
        workers = [subprocess.Popen(argv, env=self.env, cwd=APPS, stdout=log, stderr=log,
                                    start_new_session=True) for argv in argvs]
        try:
            return float(self.driver(name, "e2e", n))
        finally:
            for sig in (signal.SIGTERM, signal.SIGKILL):   # KILL: whatever TERM left behind
                for w in workers:
                    _killpg(w.pid, sig)
                for w in workers:
                    try:
                        w.wait(20)
                    except subprocess.TimeoutExpired:
                        pass
            log.close()


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def luzia_figures(n: int, n_enqueue: int, slots: int) -> dict[str, float]:
    import e2e_jobs
    import submit_throughput
    e2e = e2e_jobs.main(n, slots)
    return {"enqueue": submit_throughput.client_rate(n_enqueue),
            "ingest": submit_throughput.broker_rate(max(n_enqueue, 20_000))[0],
            "e2e": e2e["push_jobs_per_s"], "e2e_client": e2e["client_jobs_per_s"],
            "spawn": spawn_rate()}


def one_shots(peers: Peers, runs: int) -> dict[str, float]:
    fleet = temp_fleet()
    try:
        fleet.start_broker()
        env = {**peers.env, **fleet.env}
        argvs = {"luzia": [PY, "-m", "luzia.cli", "demo", "x"], "imports": IMPORTS, "pass": PASS,
                 **{name: peers.one_shot_argv(name) for name in PEERS}}
        times = startup_times(argvs, runs, env)
    finally:
        fleet.close()
    peers.redis.command("FLUSHALL")
    return {name: median(t) * 1000 for name, t in times.items()}


def table(ours: dict[str, float], theirs: dict[str, dict[str, float]], shots: dict[str, float],
          slots: int) -> None:
    def best(key: str, low: bool = False) -> tuple[str, float]:
        pick = min if low else max
        name = pick(theirs, key=lambda p: theirs[p][key])
        return PEERS[name], theirs[name][key]

    print(f"\n| figure | Luzia | {' | '.join(PEERS.values())} | Luzia / best peer |")
    print("|---|---|" + "---|" * len(PEERS) + "---|")
    rows = [("enqueue, one process, one call per job", "enqueue", ours["enqueue"], "/s", False),
            ("submissions taken per second: Luzia's broker, persisted; the peers' enqueue",
             "enqueue", ours["ingest"], "/s", False),
            ("end to end, no-op jobs", "e2e", ours["e2e"], "/s", False),
            ("one-shot enqueue, fresh process, p50", "one_shot", shots["luzia"], " ms", True)]
    for label, key, mine, unit, low in rows:
        name, value = best(key, low)
        cells = [f"{theirs[p][key]:,.0f}{unit}" for p in PEERS]
        ratio = value / mine if low else mine / value
        print(f"| {label} | {mine:,.0f}{unit} | {' | '.join(cells)} | {ratio:.2f}x "
              f"({'faster' if ratio >= 1 else 'slower'} than {name}) |")
    print(f"\nLuzia's enqueue is client.submit() (spool with fsync, then PUSH); its broker "
          f"commits with synchronous=FULL, the peers' Redis persists nothing; Luzia end to end "
          f"on {slots} slots, a process per job, its jobs pushed on one socket (through "
          f"client.submit(): {ours['e2e_client']:,.0f}/s); each peer 2 worker processes. Floors: python "
          f"-c 'import zmq, msgpack' {shots['imports']:.0f} ms, python -c pass "
          f"{shots['pass']:.0f} ms; a bare process per job (posix_spawn of /bin/true and "
          f"waitpid, a loop per core, no queue) {ours['spawn']:,.0f}/s, "
          f"{ours['spawn'] / best('e2e')[1]:.2f}x the best peer's end to end.")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default=str(HERE / ".venv-peers" / "bin" / "python"))
    ap.add_argument("--jobs", type=int, default=1000, help="no-op jobs end to end")
    ap.add_argument("--enqueue", type=int, default=5000, help="jobs for the enqueue rate")
    ap.add_argument("--runs", type=int, default=20, help="fresh processes per one-shot figure")
    ap.add_argument("--slots", type=int, default=8, help="Luzia agent's slots end to end")
    args = ap.parse_args()
    args.python = os.path.abspath(args.python)    # not resolve(): the venv's python is a link
    why = missing(args.python)
    if why:
        print(f"peers: skipped: {why}")
        return 0
    print(f"machine: {machine()}\nload average at start: {load()}  ({time.strftime('%Y-%m-%d %H:%M')})")
    versions = subprocess.run([args.python, "-c", "import importlib.metadata as m; print(', '.join("
                               "f'{p} {m.version(p)}' for p in ('rq', 'celery', 'dramatiq', 'redis')))"],
                              capture_output=True, text=True).stdout.strip()
    server = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()
    print(f"peers: {versions}; redis-server {server[2].removeprefix('v=')} (no persistence); "
          f"{args.jobs} jobs end to end, {args.enqueue} enqueued, {args.runs} one-shots each")
    redis = Redis()
    try:
        peers = Peers(args.python, redis)
        theirs: dict[str, dict[str, float]] = {}
        for name, label in PEERS.items():
            theirs[name] = {"enqueue": float(peers.driver(name, "enqueue", args.enqueue)),
                            "e2e": peers.end_to_end(name, args.jobs)}
            print(f"{label}: enqueue {theirs[name]['enqueue']:,.0f}/s; end to end "
                  f"{theirs[name]['e2e']:,.0f} jobs/s (2 worker processes)")
        shots = one_shots(peers, args.runs)
        for name in PEERS:
            theirs[name]["one_shot"] = shots[name]
        print("one-shot p50: " + ", ".join(f"{k} {v:.0f} ms" for k, v in shots.items()))
    finally:
        redis.close()
    print("--- Luzia, same run")
    ours = luzia_figures(args.jobs, args.enqueue, args.slots)
    print(f"Luzia: client.submit() loop {ours['enqueue']:,.0f}/s; broker ingest {ours['ingest']:,.0f}/s; "
          f"end to end {ours['e2e']:,.1f} jobs/s pushed on one socket, "
          f"{ours['e2e_client']:,.1f} jobs/s through client.submit() ({args.slots} slots)")
    print(f"load average at end: {load()}")
    table(ours, theirs, shots, args.slots)
    return 0


if __name__ == "__main__":
    sys.exit(main())
