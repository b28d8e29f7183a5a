"""The files a job's directory holds (DECISIONS: fewer files a job): meta.json with the
attempt's first record, `process` with the command's pid and exit status, output.log; and a
directory laid out by the previous release (status.json from the start, `.pid.tmp` and
`.exit_code.tmp` renamed into `pid` and `exit_code` by its tracker), which an upgraded agent
re-adopts and finishes."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import zmq

from luzia import layout, protocol
from luzia.agents.jobdir import JobDir, prune
from luzia.agents.worker import Worker
from luzia.ids import new_job_id
from tests.agents.fakebroker import PY, SLEEP, FakeBroker, agent_config
from tests.helpers import wait_for

TRUE = [PY, "-c", "pass", "{task}"]


def test_a_spawned_job_makes_four_files_and_its_ack_adds_none(rig):
    cfg, broker, worker, _ = rig(f'runner = "subprocess"\ngit_snapshots = false\n'
                                 f'command = {json.dumps(TRUE)}')
    job = protocol.JobSpec(id=new_job_id(), project="demo", task="t", user="u")
    broker.send(protocol.Assign(job=job, attempt=1))
    assert broker.recv(worker, protocol.Done, where=lambda m: m.job_id == job.id).exit_code == 0
    broker.lists_worker_jobs = False       # its beats list nothing now: the Done is taken
    wait_for(lambda: (broker.pump(worker), job.id not in worker.jobs)[1], 15,
             message="the Done acknowledged")
    jd = JobDir(Path(cfg.jobs_dir), job.id)
    assert sorted(p.name for p in jd.path.iterdir()) == \
        [layout.META, layout.OUTPUT, layout.PROCESS]
    assert jd.status().acked and jd.status().runner == "subprocess"
    assert jd.exit_code() == 0 and jd.pid() > 0
    assert json.loads((jd.path / layout.META).read_text())["job"]["id"] == job.id


def test_a_field_half_written_reads_as_none(short_tmp):
    jd = JobDir(short_tmp, new_job_id())
    jd.path.mkdir()
    room = bytearray(b" " * layout.PROCESS_BYTES)
    (jd.path / layout.PROCESS).write_bytes(room)
    assert (jd.pid(), jd.exit_code()) == (0, None)
    for n in range(len("exit 137\n")):     # any prefix of the field, the rest still spaces
        room[layout.EXIT_AT:layout.EXIT_AT + n] = b"exit 137\n"[:n]
        (jd.path / layout.PROCESS).write_bytes(room)
        assert jd.exit_code() is None, room
    room[layout.PID_AT:layout.PID_AT + 9] = b"pid 4242\n"
    room[layout.EXIT_AT:layout.EXIT_AT + 9] = b"exit 137\n"
    (jd.path / layout.PROCESS).write_bytes(room)
    assert (jd.pid(), jd.exit_code()) == (4242, 137)


def old_layout(cfg, task: str, **status) -> JobDir:
    """A job directory as the previous release laid it out and noted it: meta.json without a
    record, status.json, the two reserves (`.pid.tmp`, `.exit_code.tmp`)."""
    spec = protocol.JobSpec(id=new_job_id(), project="demo", task=task, user="u")
    jd = JobDir(Path(cfg.jobs_dir), spec.id)
    jd.path.mkdir(parents=True)
    argv = [a.replace("{task}", task) for a in SLEEP]
    meta = {"job": protocol.to_plain(spec), "attempt": 1, "argv": argv, "cwd": str(jd.path),
            "env": {}, "created_at": time.time(), "host": cfg.agent.name,
            "git_snapshots": False, "workspace": None, "format": "none", "account": "",
            "resumed": ""}
    (jd.path / layout.META).write_text(json.dumps(meta, indent=1))
    for name in (".pid.tmp", ".exit_code.tmp"):
        (jd.path / name).write_bytes(b" " * 64)
    record = {"state": "running", "attempt": 1, "acked": False, "started_at": time.time(),
              "runner": "subprocess", **status}
    (jd.path / layout.STATUS).write_text(json.dumps(record))
    return jd


def old_write(jd: JobDir, name: str, text: str) -> None:
    """As the previous release's tracker wrote `pid` and `exit_code`: in place into the
    reserve, then renamed."""
    tmp = jd.path / f".{name}.tmp"
    with open(tmp, "r+b") as f:
        f.write(text.encode())
        f.truncate(len(text))
    tmp.rename(jd.path / name)


def test_an_upgraded_agent_readopts_and_finishes_jobs_laid_out_by_the_previous_release(
        short_tmp):
    home = short_tmp / "h"
    home.mkdir()
    cfg = agent_config(home, f'runner = "subprocess"\ngit_snapshots = false\n'
                             f'command = {json.dumps(TRUE)}')
    # one ended while no agent watched; one still runs under a tracker of the old release,
    # which will write `exit_code` the old way (its command line names the job's directory)
    ended = old_layout(cfg, "0", wrapper_pid=0)
    old_write(ended, layout.PID, "999999\n")
    old_write(ended, layout.EXIT_CODE, "3\n")
    running = old_layout(cfg, "30")
    gate = short_tmp / "gate"
    script = (f'while [ ! -e {gate} ]; do sleep 0.05; done; d="$1"; '
              'printf "5\\n" > "$d/.exit_code.tmp" && mv "$d/.exit_code.tmp" "$d/exit_code"')
    tracker = subprocess.Popen(["/bin/sh", "-c", script, "sh", str(running.path)],
                               start_new_session=True)
    old_write(running, layout.PID, f"{tracker.pid}\n")
    record = json.loads((running.path / layout.STATUS).read_text())
    (running.path / layout.STATUS).write_text(json.dumps({**record, "wrapper_pid": tracker.pid}))
    broker = FakeBroker(cfg)
    worker = Worker(cfg, ctx=zmq.Context())
    try:
        hello = broker.recv(worker, protocol.Hello)
        assert sorted((h.job_id, h.exit_code) for h in hello.held) == \
            sorted([(ended.id, 3), (running.id, None)])
        assert JobDir(running.path.parent, running.id).pid() == tracker.pid
        broker.send(protocol.Welcome(heartbeat_interval=0.05,
                                     adopt=[ended.id, running.id]))
        done = broker.recv(worker, protocol.Done, where=lambda m: m.job_id == ended.id)
        assert done.exit_code == 3
        gate.touch()
        done = broker.recv(worker, protocol.Done, where=lambda m: m.job_id == running.id)
        assert done.exit_code == 5 and done.reason == ""
        broker.lists_worker_jobs = False   # its beats list nothing now: the Dones are taken
        wait_for(lambda: (broker.pump(worker), not worker.jobs)[1], 15,
                 message="both Dones acknowledged")
        for jd in (ended, running):        # acknowledged where the old layout keeps its record
            assert json.loads((jd.path / layout.STATUS).read_text())["acked"] is True
            assert "status" not in json.loads((jd.path / layout.META).read_text())
        # a new attempt in an old directory is laid out the new way, the old files gone
        broker.send(protocol.Assign(job=protocol.from_plain(
            protocol.JobSpec, json.loads((ended.path / layout.META).read_text())["job"]),
            attempt=2))
        broker.lists_worker_jobs = True
        done = broker.recv(worker, protocol.Done, where=lambda m: m.attempt == 2)
        assert done.exit_code == 0
        names = {p.name for p in ended.path.iterdir()}
        assert layout.PROCESS in names and not names & {layout.PID, layout.EXIT_CODE,
                                                        layout.STATUS, ".pid.tmp",
                                                        ".exit_code.tmp"}, names
    finally:
        tracker.kill()
        tracker.wait()
        worker.close()
        worker.ctx.term()
        broker.close()


def test_prune_reads_both_layouts(short_tmp):
    old, new, running = (JobDir(short_tmp, new_job_id()) for _ in range(3))
    for jd in (old, new, running):
        jd.path.mkdir()
    (old.path / layout.EXIT_CODE).write_text("0\n")
    room = bytearray(b" " * layout.PROCESS_BYTES)
    (running.path / layout.PROCESS).write_bytes(room)
    room[layout.EXIT_AT:layout.EXIT_AT + 7] = b"exit 0\n"
    (new.path / layout.PROCESS).write_bytes(room)
    assert prune(short_tmp, 0, active=set()) == 2
    assert [p.name for p in short_tmp.iterdir()] == [running.id]
