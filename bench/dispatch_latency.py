"""One-shot submit from a fresh process: wall time of `luzia demo "x"` (config, spool with
fsync, PUSH, print) against `python -c "import zmq, msgpack"` (its floor) and `python -c
pass`, all three interleaved in the same run. Goal (issue 15): ratio <= 1.25.

Run: .venv/bin/python bench/dispatch_latency.py [runs]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from _common import PY, median, pct, startup_times, temp_fleet  # type: ignore[attr-defined]
from floors import IMPORTS, PASS

ROOT = Path(__file__).resolve().parent.parent


def main(runs: int = 30) -> dict[str, float]:
    fleet = temp_fleet()
    try:
        fleet.start_broker()
        # measure with bytecode in place, as after `make install` (this box may set
        # PYTHONDONTWRITEBYTECODE, which would make every run compile our modules)
        subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "luzia")], check=True)
        times = startup_times({"luzia": [PY, "-m", "luzia.cli", "demo", "x"], "imports": IMPORTS,
                               "pass": PASS}, runs, fleet.env)
    finally:
        fleet.close()
    ours, floor = times["luzia"], times["imports"]
    res = {"luzia_ms_p50": median(ours) * 1000, "luzia_ms_p90": pct(ours, 90) * 1000,
           "baseline_ms_p50": median(floor) * 1000, "pass_ms_p50": median(times["pass"]) * 1000,
           "ratio": median(ours) / median(floor)}
    print(f"one-shot submit: luzia demo x p50 {res['luzia_ms_p50']:.1f} ms "
          f"(p90 {res['luzia_ms_p90']:.1f} ms); python -c 'import zmq, msgpack' p50 "
          f"{res['baseline_ms_p50']:.1f} ms; python -c pass p50 {res['pass_ms_p50']:.1f} ms; "
          f"ratio to the import floor {res['ratio']:.2f}x (goal <= 1.25x)")
    return res


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
