"""Run every benchmark, then print issue 15's four figures beside the floors of this run
(copy them into BENCHMARKS.md). Each script also runs alone.

Run: .venv/bin/python bench/run_all.py [--quick]
"""

from __future__ import annotations

import runpy
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import dispatch_latency  # noqa: E402
import e2e_jobs  # noqa: E402
import scheduler  # noqa: E402
import start_latency  # noqa: E402
import submit_throughput  # noqa: E402
from _common import load, machine  # noqa: E402
from floors import spawn_rate  # noqa: E402


def summary(one: dict, ingest: dict, e2e: dict, starts: list[dict[str, Any]]) -> None:
    rows = [
        ("one-shot submit, fresh process, p50",
         f"{one['luzia_ms_p50']:.0f} ms ({one['ratio']:.2f}x its floor)",
         f"import zmq, msgpack {one['baseline_ms_p50']:.0f} ms; python -c pass "
         f"{one['pass_ms_p50']:.0f} ms", "<= 1.25x the import floor"),
        ("submissions persisted per second (fsync'd)",
         f"{ingest['broker_per_s']:,.0f}/s ({ingest['ratio']:.2f}x the raw bus)",
         f"raw PUSH/PULL+msgpack, two processes {ingest['raw_per_s']:,.0f}/s", ">= 50,000/s"),
        ("no-op jobs end to end per second",
         f"{e2e['push_jobs_per_s']:.0f}/s pushed on one socket, {e2e['client_jobs_per_s']:.0f}/s "
         f"through client.submit() ({e2e['slots']} slots, a process per job)",
         f"a bare process per job (posix_spawn of /bin/true, a loop per core) "
         f"{e2e['spawn_per_s']:,.0f}/s; peers: make bench-peers", ">= 2x the best peer"),
    ]
    for s in starts:
        rows.append((f"submit -> command running, idle, p50 / p99 ({s['runner']})",
                     f"{s['p50_ms']:.1f} / {s['p99_ms']:.1f} ms ({s['n']} jobs)",
                     f"client call alone p50 {s['call_ms']:.1f} ms", "p50 <= 15 ms, p99 <= 50 ms"))
    print("\n| figure | Luzia | floor, same run | goal |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    quick = "--quick" in sys.argv
    print(f"machine: {machine()}")
    print(f"load average at start: {load()}  ({time.strftime('%Y-%m-%d %H:%M')})")
    print("--- one-shot submit")
    one = dispatch_latency.main(10 if quick else 30)
    print("--- ingest")
    ingest = submit_throughput.main(20_000 if quick else 50_000)
    print("--- end to end")
    e2e = e2e_jobs.main(100 if quick else 300)
    e2e["spawn_per_s"] = spawn_rate()
    print(f"floor: a bare process per job, {e2e['spawn_per_s']:,.0f}/s")
    print("--- submit -> command running")
    starts = [start_latency.main(30 if quick else 150, "auto")]
    if starts[0]["runner"] == "tmux":
        starts.append(start_latency.main(30 if quick else 150, "subprocess"))
    print("--- scheduler")
    scheduler.main()
    print("--- web pages")
    small = ["--jobs", "10000", "-n", "30"] if quick else []
    argv, sys.argv = sys.argv, [str(HERE / "web_pages.py"), *small]
    try:
        runpy.run_path(str(HERE / "web_pages.py"), run_name="__main__")
    finally:
        sys.argv = argv
    print(f"\nload average at end: {load()}")
    summary(one, ingest, e2e, starts)


if __name__ == "__main__":
    main()
