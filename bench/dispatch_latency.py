"""One-shot submit from a fresh process: `luzia demo x` (config, spool with fsync, PUSH,
print) against `python -c "import zmq, msgpack"` (its floor) and `python -c pass`, the
three alternated run by run. Each run's wall time and CPU time (user + sys, from the
children's resource usage: the cpu figure is the steadier one on a loaded box), and the
ratio to the floor pair by pair (run i of luzia against run i of the floor), its median
printed. Goal (issue 15): ratio <= 1.25.

Run: .venv/bin/python bench/dispatch_latency.py [runs]
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

from _common import PY, load, median, pct, temp_fleet  # type: ignore[attr-defined]
from floors import IMPORTS, PASS

ROOT = Path(__file__).resolve().parent.parent


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, cpu) seconds of one fresh process, start to exit."""
    cpu, wall = _children_cpu(), time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True)
    return time.perf_counter() - wall, _children_cpu() - cpu


def paired(argvs: dict[str, list[str]], runs: int, env: dict[str, str]
           ) -> dict[str, list[tuple[float, float]]]:
    """`runs` (wall, cpu) of each command, the commands alternated within each run; one
    warm-up run each first (page cache, bytecode)."""
    for argv in argvs.values():
        timed(argv, env)
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in argvs}
    for _ in range(runs):
        for name, argv in argvs.items():
            out[name].append(timed(argv, env))
    return out


def main(runs: int = 30) -> dict[str, float]:
    fleet = temp_fleet()
    try:
        fleet.start_broker()
        # measure with bytecode in place, as after `make install` (this box may set
        # PYTHONDONTWRITEBYTECODE, which would make every run compile our modules)
        subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "luzia")], check=True)
        before = load()
        times = paired({"luzia": [PY, "-m", "luzia.cli", "demo", "x"], "imports": IMPORTS,
                        "pass": PASS}, runs, fleet.env)
        after = load()
    finally:
        fleet.close()
    walls = {name: [w for w, _ in pairs] for name, pairs in times.items()}
    cpus = {name: [c for _, c in pairs] for name, pairs in times.items()}
    ours, floor = walls["luzia"], walls["imports"]
    res = {"luzia_ms_p50": median(ours) * 1000, "luzia_ms_p90": pct(ours, 90) * 1000,
           "baseline_ms_p50": median(floor) * 1000, "pass_ms_p50": median(walls["pass"]) * 1000,
           "ratio": median(ours) / median(floor),
           "luzia_cpu_ms_p50": median(cpus["luzia"]) * 1000,
           "baseline_cpu_ms_p50": median(cpus["imports"]) * 1000,
           "pass_cpu_ms_p50": median(cpus["pass"]) * 1000,
           "wall_ratio_paired": median([a / b for a, b in zip(ours, floor, strict=True)]),
           "cpu_ratio_paired": median([a / b for a, b in zip(cpus["luzia"], cpus["imports"], strict=True)])}
    print(f"one-shot submit ({runs} runs each, alternated; load {before} -> {after}):\n"
          f"  luzia demo x: wall p50 {res['luzia_ms_p50']:.1f} ms (p90 "
          f"{res['luzia_ms_p90']:.1f}), cpu p50 {res['luzia_cpu_ms_p50']:.1f} ms\n"
          f"  python -c 'import zmq, msgpack': wall p50 {res['baseline_ms_p50']:.1f} ms, "
          f"cpu p50 {res['baseline_cpu_ms_p50']:.1f} ms\n"
          f"  python -c pass: wall p50 {res['pass_ms_p50']:.1f} ms, cpu p50 "
          f"{res['pass_cpu_ms_p50']:.1f} ms\n"
          f"  ratio to the import floor, pair by pair (median): cpu "
          f"{res['cpu_ratio_paired']:.2f}x, wall {res['wall_ratio_paired']:.2f}x; "
          f"of the wall medians {res['ratio']:.2f}x (goal <= 1.25x)")
    return res


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
