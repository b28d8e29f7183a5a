"""(b) Persisted submissions per second at the broker from one client process, against raw
PUSH/PULL + msgpack between two processes on the same machine. Goal: ratio >= 0.5."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from _common import PY, temp_fleet  # type: ignore[attr-defined]

CLIENT = textwrap.dedent("""
    import sys, time, zmq
    from luzia import protocol
    from luzia.ids import new_job_id
    n, endpoint = int(sys.argv[1]), sys.argv[2]
    ctx = zmq.Context(); push = ctx.socket(zmq.PUSH); push.setsockopt(zmq.SNDHWM, 0)
    push.connect(endpoint); time.sleep(0.2)
    now = time.time()
    for i in range(n):
        job = protocol.JobSpec(id=new_job_id(), project="demo", task=f"task {i}", user=f"u{i % 100}",
                               type="code", submitted_at=now)
        push.send_multipart(protocol.encode(protocol.Submit(job=job)))
    push.close(linger=-1); ctx.term()
""")

RAW = textwrap.dedent("""
    import sys, threading, time, zmq, msgpack
    n, endpoint = int(sys.argv[1]), sys.argv[2]
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL); pull.setsockopt(zmq.RCVHWM, 0); pull.bind(endpoint)
    def producer():
        push = ctx.socket(zmq.PUSH); push.setsockopt(zmq.SNDHWM, 0); push.connect(endpoint)
        body = {"id": "113754-a2f5c10e9b3d", "project": "demo", "task": "task", "user": "u1",
                "priority": 2, "type": "code", "timeout": 0.0, "max_retries": 0, "after": [],
                "metadata": {}, "workdir": "", "submitted_at": time.time()}
        for i in range(n):
            push.send_multipart([b"LZ1", b"SUBMIT", msgpack.packb({"job": {**body, "task": f"task {i}"}})])
        push.close(linger=-1)
    threading.Thread(target=producer, daemon=True).start()
    first = None
    for i in range(n):
        frames = pull.recv_multipart()
        if first is None: first = time.perf_counter()
        msgpack.unpackb(frames[2])
    print(n / (time.perf_counter() - first))
""")


def raw_rate(n: int, home: str) -> float:
    """Producer and consumer in one process (two threads), so this is a ceiling."""
    out = subprocess.run([PY, "-c", RAW, str(n), f"ipc://{home}/raw.sock"], check=True,
                         capture_output=True, text=True, timeout=300)
    return float(out.stdout.strip())


def broker_rate(n: int) -> float:
    fleet = temp_fleet("[broker]\nmax_pending = 0\n")
    try:
        fleet.start_broker()
        base = fleet.control("status")["submissions"]
        client = subprocess.Popen([PY, "-c", CLIENT, str(n), f"ipc://{fleet.home}/run/submit"],
                                  env=fleet.env)
        first = None
        while True:
            status = fleet.control("status", timeout=10)
            done = status["submissions"] - base
            if first is None and done > 0:
                first = (time.perf_counter(), done)
            if done >= n:
                end = time.perf_counter()
                break
            time.sleep(0.01)  # polling step
        client.wait()
        t0, d0 = first
        return (n - d0) / (end - t0) if end > t0 else float("nan")
    finally:
        fleet.close()


def main(n: int = 50_000) -> dict[str, float]:
    import tempfile
    home = tempfile.mkdtemp(prefix="lzr", dir="/tmp")
    raw = raw_rate(n, home)
    ours = broker_rate(n)
    res = {"broker_per_s": ours, "raw_per_s": raw, "ratio": ours / raw}
    print(f"submissions: broker persisted {ours:,.0f}/s (validated, committed to SQLite WAL, "
          f"synchronous=FULL); raw PUSH/PULL+msgpack {raw:,.0f}/s; ratio {res['ratio']:.2f}x "
          f"(goal >= 0.5x; the seeds' dispatcher: 434/s)")
    return res


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000)
