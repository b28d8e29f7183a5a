"""Runs in the peers' venv for bench/peers.py: one peer's enqueue rate or end-to-end rate.

    python driver.py rq enqueue 5000   -> enqueues per second from this one process
    python driver.py rq e2e 1000       -> jobs per second, first enqueue to last job done
                                          (the peer's workers must be running)
    python driver.py rq workers 0      -> the argv of each worker process to start, as JSON
"""

import importlib
import json
import os
import sys
import time

import done

WARMUP = 50
SETTLE = 2.0      # seconds after the warm-up, so a second worker process is up too
DEADLINE = 600.0


def wait_done(n: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while int(done.client().get(done.KEY) or 0) < n:
        if time.monotonic() > deadline:
            sys.exit(f"only {done.client().get(done.KEY)} of {n} jobs done after {DEADLINE}s")
        time.sleep(0.005)  # polling step


def main() -> None:
    name, what, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    app = importlib.import_module(f"{name}_app")
    if what == "workers":
        print(json.dumps(app.worker_argv(os.path.dirname(sys.executable),
                                         os.environ["BENCH_REDIS_URL"],
                                         os.path.dirname(os.path.abspath(__file__)))))
        return
    if what == "enqueue":
        t0 = time.perf_counter()
        for _ in range(n):
            app.enqueue_one()
        print(n / (time.perf_counter() - t0))
        return
    done.client().set(done.KEY, 0)
    for _ in range(WARMUP):
        app.enqueue_one()
    wait_done(WARMUP)
    time.sleep(SETTLE)
    done.client().set(done.KEY, 0)
    t0 = time.perf_counter()
    for _ in range(n):
        app.enqueue_one()
    wait_done(n)
    print(n / (time.perf_counter() - t0))


if __name__ == "__main__":
    main()
