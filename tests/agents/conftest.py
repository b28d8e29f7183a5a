"""The agent tests' rig: an in-process agent (Worker) against a fake broker."""

from __future__ import annotations

from pathlib import Path

import pytest
import zmq

from luzia import protocol
from luzia.agents.worker import Worker
from tests.agents.fakebroker import FakeBroker, agent_config
from tests.helpers import kill_jobs


@pytest.fixture
def rig(short_tmp, monkeypatch):
    """build(agent lines) -> (cfg, broker, worker, hello): welcomed, adopting what it holds."""
    monkeypatch.setenv("LUZIA_DEMO_SECONDS", "0.2")
    made = []

    def build(agent: str = 'runner = "subprocess"', liveness: int = 100):
        # beats every 50 ms, but silence only after 5 s: a test descheduled on a loaded box
        # must not look like a silent broker (the tests of silence ask for a short one)
        home = short_tmp / "h"
        home.mkdir(exist_ok=True)
        cfg = agent_config(home, agent)
        broker = FakeBroker(cfg)
        worker = Worker(cfg, ctx=zmq.Context())
        made.append((broker, worker))
        hello = broker.recv(worker, protocol.Hello)
        broker.send(protocol.Welcome(heartbeat_interval=0.05, liveness=liveness,
                                     adopt=[h.job_id for h in hello.held]))
        return cfg, broker, worker, hello
    yield build
    for broker, worker in made:
        worker.close()
        worker.ctx.term()
        broker.close()
        kill_jobs(Path(worker.cfg.jobs_dir))     # jobs a failed test left
