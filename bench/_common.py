"""Shared bits for the benchmark scripts: a temp fleet, the machine description, percentiles."""

from __future__ import annotations

import atexit
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# the same fleet the end-to-end tests use; PY is re-exported for the scripts
from tests.fleet import PY, LocalFleet  # noqa: E402, F401


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


def load() -> str:
    """The 1/5/15-minute load averages: other work on the box skews every figure."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def temp_dir(prefix: str) -> Path:
    """A short /tmp dir (ipc paths must stay under ~100 bytes), removed when the script ends."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    atexit.register(shutil.rmtree, path, True)
    return path


def temp_fleet(config: str = "", tmux_socket: str = "", **env: str) -> LocalFleet:
    return LocalFleet(temp_dir("lzb") / "h", config, tmux_socket=tmux_socket, env=env)


def start_one_agent(fleet: LocalFleet) -> None:
    """Broker and one agent ("local") up and the agent live; this process's environment
    points at the fleet, so `luzia.client` submits to it."""
    fleet.start_broker()
    fleet.start_agent("local")
    while "local" not in fleet.live_agents():
        time.sleep(0.05)  # polling step
    os.environ.update(fleet.env)


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    """Wall seconds of one fresh process, start to exit."""
    t = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def startup_times(argvs: dict[str, list[str]], runs: int, env: dict[str, str] | None = None
                ) -> dict[str, list[float]]:
    """Wall seconds of each command over `runs` fresh processes, interleaved so every
    command sees the same machine load; one warm-up run each fills the page cache."""
    for argv in argvs.values():
        timed(argv, env)
    out: dict[str, list[float]] = {name: [] for name in argvs}
    for _ in range(runs):
        for name, argv in argvs.items():
            out[name].append(timed(argv, env))
    return out


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def median(values: list[float]) -> float:
    return statistics.median(values)
