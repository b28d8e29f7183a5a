"""Run every benchmark and print its figures (copy them into BENCHMARKS.md)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import machine  # noqa: E402

print(f"machine: {machine()}")
for script in ("dispatch_latency", "submit_throughput", "e2e_jobs", "scheduler", "web_pages"):
    path = HERE / f"{script}.py"
    if path.exists():
        print(f"--- {script}")
        sys.argv = [str(path)]
        runpy.run_path(str(path), run_name="__main__")
