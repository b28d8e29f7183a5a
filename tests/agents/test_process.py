"""`python -m luzia.agents` as a real process: signals, start errors, re-adoption by pid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from luzia import config, protocol
from luzia.agents.jobdir import JobDir
from luzia.ids import new_job_id
from tests.agents.fakebroker import PY, SLEEP, FakeBroker
from tests.conftest import write_config
from tests.helpers import kill_jobs, wait_for


@pytest.fixture
def agent_rig(luzia_env):
    """Start agents as processes against a fake broker; everything is killed at the end."""
    home, path = luzia_env
    write_config(home, f'[broker]\nheartbeat_interval = 0.05\n'
                       f'[agent]\nrunner = "subprocess"\nkill_grace = 0.5\n'
                       f'command = {json.dumps(SLEEP)}\n')
    cfg = config.load()
    broker = FakeBroker(cfg)
    procs: list[subprocess.Popen] = []

    def start(*flags: str) -> subprocess.Popen:
        proc = subprocess.Popen([PY, "-m", "luzia.agents", "--name", "a1", *flags],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc
    yield cfg, broker, start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
    kill_jobs(Path(cfg.jobs_dir))
    broker.close()


def assign(broker: FakeBroker, task: str) -> protocol.JobSpec:
    job = protocol.JobSpec(id=new_job_id(), project="demo", task=task, user="u", type="code")
    broker.listed.add(job.id)
    broker.send(protocol.Assign(job=job, attempt=1))
    return job


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_agent_stops_on_signal_and_leaves_its_job_running_then_readopts_it(agent_rig, sig):
    cfg, broker, start = agent_rig
    agent = start("--connect", cfg.endpoints.agents, "-v")
    hello = broker.recv(None, protocol.Hello)
    assert hello.name == "a1" and hello.held == []
    broker.send(protocol.Welcome(heartbeat_interval=0.05))
    long_job, short_job = assign(broker, "30"), assign(broker, "0.5")
    for job in (long_job, short_job):
        broker.recv(None, protocol.Started, where=lambda m, j=job: m.job_id == j.id)
    long_dir = Path(cfg.jobs_dir) / long_job.id
    pid = wait_for(lambda: JobDir(long_dir.parent, long_job.id).pid(), 15)

    agent.send_signal(sig)
    assert agent.wait(10) == 0
    assert alive(pid)
    wait_for(lambda: JobDir(Path(cfg.jobs_dir), short_job.id).exit_code() is not None, 15)

    again = start()
    # (the first agent may have said Hello again meanwhile: the broker was quiet while we waited)
    hello = broker.recv(None, protocol.Hello, where=lambda m: m.pid == again.pid)
    assert {h.job_id: h.exit_code for h in hello.held} == {long_job.id: None, short_job.id: 0}
    broker.send(protocol.Welcome(heartbeat_interval=0.05, adopt=[long_job.id, short_job.id]))
    broker.listed.discard(short_job.id)      # its held exit code was its Done
    broker.send(protocol.Cancel(job_id=long_job.id))
    done = broker.recv(None, protocol.Done, where=lambda m: m.job_id == long_job.id)
    assert done.reason == "cancelled" and done.exit_code == 128 + 15
    wait_for(lambda: not alive(pid), 15)
    short_dir = JobDir(Path(cfg.jobs_dir), short_job.id)
    wait_for(lambda: (broker.pump(), short_dir.status().acked)[1], 15)
    assert short_dir.status().exit_code == 0 and short_dir.status().attempt == 1


def test_a_start_error_is_one_line_and_its_exit_code(luzia_env, monkeypatch):
    home, _ = luzia_env
    monkeypatch.setenv("LUZIA_CONFIG", str(home / "missing.toml"))
    out = subprocess.run([PY, "-m", "luzia.agents"], capture_output=True, text=True, timeout=20)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "missing.toml" in out.stderr
    out = subprocess.run([PY, "-m", "luzia.agents", "--runner", "subprocess", "--connect",
                          "http://nope"], capture_output=True, text=True, timeout=20,
                         env={**os.environ, "LUZIA_CONFIG": str(home / "luzia.toml")})
    assert out.returncode == 2 and "endpoints.agents" in out.stderr
