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
    import sys, time, zmq, msgpack
    n, endpoint, role = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    ctx = zmq.Context()
    if role == "pull":
        s = ctx.socket(zmq.PULL); s.setsockopt(zmq.RCVHWM, 0); s.bind(endpoint)
        print("ready", flush=True)
        first = None
        for i in range(n):
            frames = s.recv_multipart()
            if first is None: first = time.perf_counter()
            msgpack.unpackb(frames[2])
        print(time.perf_counter() - first, flush=True)
    else:
        s = ctx.socket(zmq.PUSH); s.setsockopt(zmq.SNDHWM, 0); s.connect(endpoint); time.sleep(0.2)
        body = {"id": "113754-a2f5c10e9b3d", "project": "demo", "task": "task", "user": "u1",
                "priority": 2, "type": "code", "timeout": 0.0, "max_retries": 0, "after": [],
                "metadata": {}, "workdir": "", "submitted_at": time.time()}
        for i in range(n):
            s.send_multipart([b"LZ1", b"SUBMIT", msgpack.packb({"job": {**body, "task": f"task {i}"}})])
        s.close(linger=-1)
    ctx.term()
""")


def raw_rate(n: int, home: str) -> float:
    endpoint = f"ipc://{home}/raw.sock"
    pull = subprocess.Popen([PY, "-c", RAW, str(n), endpoint, "pull"], stdout=subprocess.PIPE)
    pull.stdout.readline()
    subprocess.run([PY, "-c", RAW, str(n), endpoint, "push"], check=True)
    elapsed = float(pull.stdout.readline())
    pull.wait()
    return n / elapsed


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
