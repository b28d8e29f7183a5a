"""The floors every Luzia figure is read against, measured on this machine in this run:
a fresh `python -c pass`, a fresh `python -c "import zmq, msgpack"` (what the one-shot
submit cannot go below), the raw PUSH/PULL + msgpack rate between two processes (what
the broker's ingest cannot go above), and a bare process per job: `/bin/true` started with
posix_spawn and waited for, one loop per core, no queue and no bookkeeping (what no-op jobs
end to end cannot go above, with a process per job).

Run: .venv/bin/python bench/floors.py [runs] [messages]
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import time

from _common import PY, median, startup_times, temp_dir

PASS = [PY, "-c", "pass"]
IMPORTS = [PY, "-c", "import zmq, msgpack"]

# the same body the CLI sends (a Submit's JobSpec), packed per message as a sender would
SENDER = textwrap.dedent("""
    import sys, time, zmq, msgpack
    n, endpoint = int(sys.argv[1]), sys.argv[2]
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH); push.setsockopt(zmq.SNDHWM, 0); push.connect(endpoint)
    body = {"id": "113754-a2f5c10e9b3d", "project": "demo", "task": "task", "user": "u1",
            "priority": 2, "type": "code", "timeout": 0.0, "max_retries": 0, "after": [],
            "metadata": {}, "workdir": "", "submitted_at": time.time()}
    for i in range(n):
        push.send_multipart([b"LZ1", b"SUBMIT", msgpack.packb({"job": {**body, "task": f"task {i}"}})])
    push.close(linger=-1); ctx.term()
""")

RECEIVER = textwrap.dedent("""
    import sys, time, zmq, msgpack
    n, endpoint = int(sys.argv[1]), sys.argv[2]
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL); pull.setsockopt(zmq.RCVHWM, 0); pull.bind(endpoint)
    print("ready", flush=True)
    msgpack.unpackb(pull.recv_multipart()[2])
    first = time.perf_counter()
    for _ in range(n - 1):
        msgpack.unpackb(pull.recv_multipart()[2])
    print((n - 1) / (time.perf_counter() - first), flush=True)
""")


def raw_bus_rate(n: int = 200_000) -> float:
    """Messages per second from a PUSH process to a PULL process that unpacks each one
    (timed at the receiver from its first message to its last)."""
    endpoint = f"ipc://{temp_dir('lzr')}/raw"
    receiver = subprocess.Popen([PY, "-c", RECEIVER, str(n), endpoint], stdout=subprocess.PIPE,
                                text=True)
    try:
        assert receiver.stdout is not None
        if receiver.stdout.readline().strip() != "ready":
            raise RuntimeError("raw bus receiver did not start")
        subprocess.run([PY, "-c", SENDER, str(n), endpoint], check=True, timeout=600)
        return float(receiver.stdout.readline())
    finally:
        if receiver.poll() is None:
            receiver.kill()
        receiver.wait()


def _spawn_loop(n: int) -> None:
    for _ in range(n):
        os.waitpid(os.posix_spawn("/bin/true", ["true"], {}), 0)


def spawn_rate(n: int = 4000) -> float:
    """Processes per second: `n` runs of /bin/true, posix_spawn + waitpid, in one loop per
    core at once (the cheapest start there is from Python: no copy of the parent's memory
    map, which fork makes)."""
    loops = os.cpu_count() or 1
    _spawn_loop(50)    # page cache, the dynamic loader's files
    workers = [multiprocessing.Process(target=_spawn_loop, args=(n // loops,))
               for _ in range(loops)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return n // loops * loops / (time.perf_counter() - start)


def startup_floors(runs: int = 30) -> dict[str, float]:
    times = startup_times({"pass": PASS, "imports": IMPORTS}, runs)
    return {"pass_ms": median(times["pass"]) * 1000, "imports_ms": median(times["imports"]) * 1000}


def main(runs: int = 30, n: int = 200_000) -> dict[str, float]:
    res = startup_floors(runs)
    res["raw_per_s"] = raw_bus_rate(n)
    res["spawn_per_s"] = spawn_rate()
    print(f"floors: python -c pass p50 {res['pass_ms']:.1f} ms; python -c 'import zmq, msgpack' "
          f"p50 {res['imports_ms']:.1f} ms; raw PUSH/PULL+msgpack between two processes "
          f"{res['raw_per_s']:,.0f}/s; a bare process per job (posix_spawn of /bin/true, "
          f"{os.cpu_count()} loops) {res['spawn_per_s']:,.0f}/s")
    return res


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
