"""A fake broker for agent tests: a real ROUTER socket that the test drives; and what the
agent tests share (a config, a sleeping command, an Assign)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TypeVar

import zmq

from luzia import config, protocol
from luzia.ids import new_job_id
from tests.helpers import wait_for

M = TypeVar("M", bound=protocol.Message)
PY = sys.executable
SLEEP = [PY, "-c", "import sys, time; print('working', flush=True); time.sleep(float(sys.argv[1]))",
         "{task}"]


def agent_config(home: Path, agent: str) -> config.Config:
    """A config under `home` with fast beats and a short kill grace, plus `agent` lines."""
    (home / "luzia.toml").write_text(f'home = "{home}"\n[broker]\nheartbeat_interval = 0.05\n'
                                     f'[agent]\nkill_grace = 0.5\n{agent}\n')
    return config.load(env={"LUZIA_CONFIG": str(home / "luzia.toml")})


def assign(broker: FakeBroker, task: str = "hello", **kw: Any) -> protocol.JobSpec:
    job = protocol.JobSpec(id=new_job_id(), project="demo", task=task, user="u", type="code", **kw)
    broker.send(protocol.Assign(job=job, attempt=1))
    return job


class FakeBroker:
    def __init__(self, cfg: config.Config) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.beating = True
        self.last_beat = 0.0
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        self.sock.bind(cfg.endpoints.agents)
        self.identity = b""
        self.got: list[protocol.Message] = []
        self.listed: set[str] = set()
        self.lists_worker_jobs = True    # False: our beats list `listed` even with a worker
        # Assigns sent that the worker has not taken yet: listed in our beats meanwhile, as
        # the broker lists a job from its Assign on (on a loaded box the Assign may still be
        # on its way while two beats are made, and the agent would stop it as an orphan)
        self.assigning: set[str] = set()

    def recv(self, worker, kind: type[M], timeout: float = 30.0, where=None) -> M:
        """Wait for a message of `kind`, turning `worker` (None: an agent in another process)
        and beating for it."""
        def arrived():
            for msg in self.pump(worker):
                if isinstance(msg, kind) and (where is None or where(msg)):
                    return msg
            return None
        return wait_for(arrived, timeout, message=f"a {kind.__name__}")

    def pump(self, worker=None) -> list[protocol.Message]:
        """One round: turn `worker`, beat if due (listing `self.listed`, or the worker's
        jobs), and return the messages that arrived."""
        if worker is not None:
            worker.turn(0.01)
        if worker is not None:
            self.assigning -= set(worker.jobs)
        if self.beating and self.identity and time.monotonic() - self.last_beat > 0.04:
            self.last_beat = time.monotonic()
            if worker is not None and self.lists_worker_jobs:
                listed = set(worker.jobs) | self.assigning
            else:
                listed = self.listed
            self.send(protocol.Heartbeat(running=sorted(listed)))
        out = []
        while self.sock.poll(0):
            frames = self.sock.recv_multipart()
            self.identity = frames[0]
            out.append(protocol.decode(frames[1:]))
        self.got.extend(out)
        return out

    def send(self, msg: protocol.Message) -> None:
        if isinstance(msg, protocol.Assign):
            self.assigning.add(msg.job.id)
        self.sock.send_multipart([self.identity, *protocol.encode(msg)])

    def close(self) -> None:
        self.sock.close(0)
        self.ctx.term()
