"""The agent's spawner (luzia/agents/spawner.py): the names it shares with layout.py, an end
recorded after its agent let go of it, a job its agent laid out but never sent (which a
re-adopting agent leaves to the broker instead of waiting for it), and a spawner killed
under its jobs."""

from __future__ import annotations

import json
import os
import runpy
import signal
from pathlib import Path

import psutil

from luzia import layout, protocol
from luzia.agents import processes, readopt, runners
from luzia.agents.jobdir import JobDir
from luzia.ids import new_job_id
from tests.agents.fakebroker import PY, agent_config, assign
from tests.helpers import wait_for

GATED = [PY, "-c", "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.01)\n"
         "print('through the gate'); sys.exit(7)", "{job_dir}/gate"]


def laid_out(cfg, link: processes.SpawnerLink) -> JobDir:
    spec = protocol.JobSpec(id=new_job_id(), project="demo", task="t", user="u")
    jd = JobDir(Path(cfg.jobs_dir), spec.id)
    jd.create(cfg, spec, attempt=1)
    jd.set_status(wrapper_pid=link.ensure(), runner="subprocess")
    return jd


def test_the_spawner_names_the_files_as_layout_does():
    names = runpy.run_path(processes.SPAWNER_SCRIPT)       # its main does not run
    assert (names["META"], names["OUTPUT"], names["PROCESS"]) == \
        (layout.META, layout.OUTPUT, layout.PROCESS)
    assert (names["PID_AT"], names["EXIT_AT"]) == (layout.PID_AT, layout.EXIT_AT)
    assert names["PANE_ENV"] == layout.PANE_ENV


def test_an_end_after_the_agent_let_go_is_recorded_and_then_the_spawner_exits(short_tmp):
    cfg = agent_config(short_tmp, f'runner = "subprocess"\ncommand = {json.dumps(GATED)}')
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    link = processes.SpawnerLink(Path(cfg.jobs_dir), cfg.run_dir)
    jd = laid_out(cfg, link)
    assert not runners.WrapperNeeded()(jd.meta())
    link.send(jd)
    spawner = psutil.Process(link.ensure())
    wait_for(jd.pid, 15, message="the command started")
    marks = list(cfg.run_dir.glob("spawner-*.open"))
    assert len(marks) == 1
    link.close()                                  # the agent goes (as with kill -9)
    wait_for(lambda: not marks[0].exists(), 15, message="the spawner read all it was sent")
    assert spawner.is_running() and processes.wrapper_alive(jd)
    (jd.path / "gate").touch()
    wait_for(lambda: jd.exit_code() is not None, 15, message="the end is recorded")
    assert jd.exit_code() == 7 and "through the gate" in jd.output.read_text()
    assert spawner.wait(15) == 0                  # nothing left to reap: it is gone


def test_a_job_laid_out_but_never_sent_is_left_to_the_broker(short_tmp):
    cfg = agent_config(short_tmp, f'runner = "subprocess"\ncommand = {json.dumps(GATED)}')
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    link = processes.SpawnerLink(Path(cfg.jobs_dir), cfg.run_dir)
    sent, unsent = laid_out(cfg, link), laid_out(cfg, link)
    link.send(sent)
    wait_for(sent.pid, 15, message="the command started")
    link.close()                                  # the agent died before sending `unsent`
    runs = {run.id: run for run in readopt.readopt(cfg, runners.SubprocessRunner(cfg))}
    assert set(runs) == {sent.id} and runs[sent.id].exit_code is None
    assert JobDir(Path(cfg.jobs_dir), unsent.id).status().acked
    (sent.path / "gate").touch()
    wait_for(lambda: sent.exit_code() == 7, 15)


def test_a_spawner_killed_ends_its_jobs_as_vanished_and_the_next_job_gets_a_new_one(rig):
    cfg, broker, worker, _ = rig(f'runner = "subprocess"\ncommand = {json.dumps(GATED)}')
    first = assign(broker)
    broker.recv(worker, protocol.Started)
    jd = JobDir(Path(cfg.jobs_dir), first.id)
    wait_for(jd.pid, 15, message="the command started")
    spawner = psutil.Process(jd.status().wrapper_pid)
    spawner.kill()
    done = broker.recv(worker, protocol.Done, where=lambda m: m.job_id == first.id)
    assert done.exit_code == -1 and "vanished" in done.reason
    assert not list(cfg.run_dir.glob("spawner-*.open"))     # its mark went with it
    second = assign(broker)
    broker.recv(worker, protocol.Started, where=lambda m: m.job_id == second.id)
    again = JobDir(Path(cfg.jobs_dir), second.id)
    assert again.status().wrapper_pid not in (0, spawner.pid)
    (again.path / "gate").touch()
    done = broker.recv(worker, protocol.Done, where=lambda m: m.job_id == second.id)
    assert done.exit_code == 7
    os.killpg(jd.pid(), signal.SIGKILL)    # the first command, orphaned when its spawner died


def test_what_the_spawner_does_not_do_goes_to_the_wrapper(short_tmp):
    needed = runners.WrapperNeeded()
    repo = short_tmp / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "sub").mkdir()
    plain = {"cwd": str(short_tmp), "git_snapshots": True, "workspace": None, "format": "none"}
    assert needed(plain) == ""
    assert needed({**plain, "format": "claude"}) == "output adapter"
    assert needed({**plain, "workspace": {"path": str(short_tmp / "w")}}) == "workspace"
    assert needed({**plain, "cwd": str(repo / "sub")}) == "git snapshots"
    assert needed({**plain, "cwd": str(repo / "sub"), "git_snapshots": False}) == ""
