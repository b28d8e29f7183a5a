"""The built-in demo agent, the default command: works a few seconds, prints, reports progress.

`python -m luzia.agents.demo TASK`. LUZIA_DEMO_SECONDS sets the total time (default 4);
a task containing FAIL_DEMO exits 1, for trying failures.
"""

from __future__ import annotations

import os
import sys
import time

STEPS = 8


def main() -> int:
    task = " ".join(sys.argv[1:])
    seconds = float(os.environ.get("LUZIA_DEMO_SECONDS", "4"))
    progress = os.environ.get("LUZIA_PROGRESS_FILE")
    short = task if len(task) <= 40 else task[:37] + "..."
    print(f"demo agent: working on {task!r}", flush=True)
    for step in range(1, STEPS + 1):
        time.sleep(seconds / STEPS)  # the demo's pretend work
        pct = round(step * 100 / STEPS)
        line = f"{pct}% step {step}/{STEPS}: thinking about {short!r}"
        print(line, flush=True)
        if progress:
            tmp = f"{progress}.tmp"
            with open(tmp, "w") as f:
                f.write(line + "\n")
            os.replace(tmp, progress)
    if "FAIL_DEMO" in task:
        print("demo agent: failing as asked", flush=True)
        return 1
    print("demo agent: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
