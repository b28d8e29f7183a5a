"""Shared bits for the benchmark scripts: a temp fleet and the machine description."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fleet import PY, LocalFleet  # noqa: E402  (the same fleet the end-to-end tests use)


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")


def temp_fleet(config: str = "", **env: str) -> LocalFleet:
    home = Path(tempfile.mkdtemp(prefix="lzb", dir="/tmp"))
    return LocalFleet(home / "h", config, env=env)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def median(values: list[float]) -> float:
    return statistics.median(values)
