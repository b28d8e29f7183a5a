"""An agent killed between laying out a job and starting it, or between starting its wrapper
and recording the wrapper's pid: the next agent neither fails a job that never ran nor loses
one that runs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import zmq

from luzia import protocol
from luzia.agents import runners
from luzia.agents.jobdir import JobDir
from luzia.agents.worker import Worker
from luzia.ids import new_job_id
from tests.agents.fakebroker import SLEEP, FakeBroker, agent_config
from tests.helpers import wait_for


def laid_out(cfg, task: str) -> JobDir:
    """A job directory as the agent leaves it right before it starts the wrapper."""
    spec = protocol.JobSpec(id=new_job_id(), project="demo", task=task, user="u")
    jd = JobDir(Path(cfg.jobs_dir), spec.id)
    jd.create(cfg, spec, attempt=1)
    return jd


def test_unstarted_job_is_left_to_the_broker_and_an_unrecorded_wrapper_is_found(short_tmp):
    home = short_tmp / "h"
    home.mkdir()
    cfg = agent_config(home, f'runner = "subprocess"\ncommand = {json.dumps(SLEEP)}')
    never = laid_out(cfg, "0")
    running = laid_out(cfg, "30")
    wrapper = subprocess.Popen(runners.wrapper_argv(running, pty=False), start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: running.pid(), 15, message="the wrapper started its command")
    broker = FakeBroker(cfg)
    worker = Worker(cfg, ctx=zmq.Context())
    try:
        hello = broker.recv(worker, protocol.Hello)
        assert [(h.job_id, h.exit_code) for h in hello.held] == [(running.id, None)]
        assert never.status().acked and running.status().wrapper_pid == wrapper.pid
        broker.send(protocol.Welcome(heartbeat_interval=0.05, adopt=[running.id]))
        broker.send(protocol.Cancel(job_id=running.id))
        done = broker.recv(worker, protocol.Done, where=lambda m: m.job_id == running.id)
        assert done.reason == "cancelled"
    finally:
        wrapper.kill()
        wrapper.wait()
        worker.close()
        worker.ctx.term()
        broker.close()
