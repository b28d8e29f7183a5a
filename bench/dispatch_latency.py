"""(a) Dispatch latency: wall time of `luzia demo "x"` (spool + PUSH + print) against
`python -c "import zmq, msgpack"` measured in the same run. Goal: ratio <= 1.25."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from _common import PY, median, pct, temp_fleet  # type: ignore[attr-defined]

ROOT = Path(__file__).resolve().parent.parent


def timed(argv: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def main(runs: int = 30) -> dict[str, float]:
    fleet = temp_fleet()
    try:
        fleet.start_broker()
        luzia = [PY, "-m", "luzia.cli", "demo", "x"]
        base = [PY, "-c", "import zmq, msgpack"]
        # measure with bytecode in place, as after `make install` (this box may set
        # PYTHONDONTWRITEBYTECODE, which would make every run compile our modules)
        subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "luzia")], check=True)
        for argv in (luzia, base):  # warm the page cache
            timed(argv, fleet.env)
        ours, theirs = [], []
        for _ in range(runs):   # interleaved so both see the same machine load
            ours.append(timed(luzia, fleet.env))
            theirs.append(timed(base, fleet.env))
    finally:
        fleet.close()
    res = {"luzia_ms_p50": median(ours) * 1000, "luzia_ms_p90": pct(ours, 90) * 1000,
           "baseline_ms_p50": median(theirs) * 1000, "ratio": median(ours) / median(theirs)}
    print(f"dispatch latency: luzia demo x p50 {res['luzia_ms_p50']:.1f} ms "
          f"(p90 {res['luzia_ms_p90']:.1f} ms); python -c 'import zmq, msgpack' p50 "
          f"{res['baseline_ms_p50']:.1f} ms; ratio {res['ratio']:.2f}x (goal <= 1.25x)")
    return res


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
