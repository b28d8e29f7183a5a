"""The agent against a fake broker: a real ROUTER socket driven by the test."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import zmq

from luzia import protocol
from luzia.agents.jobdir import JobDir
from luzia.agents.worker import Worker
from tests.agents.fakebroker import PY, SLEEP, FakeBroker, agent_config, assign
from tests.helpers import wait_for


def tmux_agent(tmux_socket: str, command: list[str]) -> str:
    return f'runner = "tmux"\ntmux_socket = "{tmux_socket}"\ncommand = {json.dumps(command)}'


RECORD = [PY, "-c", "import sys; open(sys.argv[2], 'w').write(sys.argv[1])", "{task}", "{job_dir}/seen"]


def test_hello_then_heartbeats_with_load(rig):
    cfg, broker, worker, hello = rig()
    assert hello.name == cfg.agent.name and hello.slots == 2 and "code" in hello.capabilities
    beat = broker.recv(worker, protocol.Heartbeat)
    assert 0 <= beat.cpu <= 1 and 0 < beat.memory <= 1


def test_demo_job_runs_through_started_progress_done(rig):
    cfg, broker, worker, _ = rig()
    job = assign(broker, "say hi")
    assert broker.recv(worker, protocol.Started).job_id == job.id
    progress = broker.recv(worker, protocol.Progress, where=lambda m: m.percent > 0)
    assert "thinking about" in progress.message
    done = broker.recv(worker, protocol.Done)
    assert done.exit_code == 0 and done.reason == "" and "demo agent: done" in done.tail
    jobdir = Path(cfg.jobs_dir) / job.id
    # `process` holds the command's pid and exit status (test_job_files: the files a job makes)
    names = {p.name for p in jobdir.iterdir()}
    assert {"meta.json", "output.log", "process", "progress.md"} <= names, names
    assert not names & {"pid", "exit_code", ".pid.tmp", ".exit_code.tmp"}, names
    jd = JobDir(jobdir.parent, job.id)
    assert jd.exit_code() == 0 and jd.pid() > 0


def test_failing_command_reports_its_exit_code(rig):
    _, broker, worker, _ = rig()
    assign(broker, "please FAIL_DEMO")
    assert broker.recv(worker, protocol.Done).exit_code == 1


def test_missing_command_is_exit_127(rig):
    _, broker, worker, _ = rig('runner = "subprocess"\ncommand = ["/nonexistent/agent", "{task}"]')
    assign(broker)
    assert broker.recv(worker, protocol.Done).exit_code == 127


@pytest.mark.parametrize("runner", ["subprocess", "tmux"])
def test_hostile_task_text_reaches_the_command_byte_for_byte(rig, runner, request):
    extra = ""
    if runner == "tmux":
        extra = f'tmux_socket = "{request.getfixturevalue("tmux_socket")}"\n'
    cfg, broker, worker, _ = rig(f'runner = "{runner}"\n{extra}command = {json.dumps(RECORD)}')
    pwned = Path(f"/tmp/pwned-{uuid.uuid4().hex[:8]}")
    task = f'$(touch {pwned}) "quotes" ; newline\n and \x1b[31m `touch {pwned}` {{task}} %s \\'
    job = assign(broker, task)
    assert broker.recv(worker, protocol.Done).exit_code == 0
    assert (Path(cfg.jobs_dir) / job.id / "seen").read_text() == task
    assert not pwned.exists()


def test_tmux_session_exists_while_the_job_runs(rig, tmux_socket):
    _, broker, worker, _ = rig(tmux_agent(tmux_socket, SLEEP))
    job = assign(broker, "5")
    started = broker.recv(worker, protocol.Started)
    assert started.session == f"luzia-{job.id}"

    def has() -> bool:
        argv = ["tmux", "-L", tmux_socket, "has-session", "-t", started.session]
        return subprocess.run(argv).returncode == 0
    assert has()
    broker.send(protocol.Cancel(job_id=job.id))
    done = broker.recv(worker, protocol.Done)
    assert done.reason == "cancelled" and done.exit_code != 0
    wait_for(lambda: not has(), 15)


def test_cancel_and_timeout_stop_the_job(rig):
    _, broker, worker, _ = rig(f'runner = "subprocess"\ncommand = {json.dumps(SLEEP)}')
    job = assign(broker, "30")
    broker.recv(worker, protocol.Started)
    broker.send(protocol.Cancel(job_id=job.id))
    done = broker.recv(worker, protocol.Done)
    assert done.reason == "cancelled" and done.exit_code == 128 + 15
    t0 = time.monotonic()
    assign(broker, "30", timeout=0.3)
    done = broker.recv(worker, protocol.Done, where=lambda m: m.reason == "timeout")
    assert time.monotonic() - t0 < 15


def test_log_request_gets_the_output(rig):
    _, broker, worker, _ = rig()
    job = assign(broker, "log me")
    broker.recv(worker, protocol.Done)
    broker.send(protocol.LogRequest(req=7, job_id=job.id, offset=0, limit=100000))
    chunk = broker.recv(worker, protocol.LogChunk)
    assert chunk.req == 7 and b"log me" in chunk.data and chunk.size == len(chunk.data)
    broker.send(protocol.LogRequest(req=8, job_id="000000-000000000000"))
    assert broker.recv(worker, protocol.LogChunk, where=lambda m: m.req == 8).error


def test_restarted_agent_readopts_running_and_ended_jobs(rig, tmux_socket):
    cfg, broker, worker, _ = rig(tmux_agent(tmux_socket, SLEEP))
    long_job = assign(broker, "30")
    broker.recv(worker, protocol.Started, where=lambda m: m.job_id == long_job.id)
    short_job = assign(broker, "0.3")
    broker.recv(worker, protocol.Started, where=lambda m: m.job_id == short_job.id)
    worker.close()                 # the agent goes away; its tmux sessions stay
    wait_for(lambda: JobDir(Path(cfg.jobs_dir), short_job.id).exit_code() is not None, 15)
    again = Worker(cfg, ctx=worker.ctx)
    try:
        hello = broker.recv(again, protocol.Hello)
        held = {h.job_id: h.exit_code for h in hello.held}
        assert held == {long_job.id: None, short_job.id: 0}
        broker.send(protocol.Welcome(heartbeat_interval=0.05, adopt=list(held)))
        broker.send(protocol.Cancel(job_id=long_job.id))
        done = broker.recv(again, protocol.Done, where=lambda m: m.job_id == long_job.id)
        assert done.reason == "cancelled"
    finally:
        again.close()


def test_garbage_from_the_broker_is_dropped(rig):
    _, broker, worker, _ = rig()
    for frames in ([b"junk"], [b"LZ1", b"ASSIGN", b"\xc1"], [b"LZ1", b"SUBMIT", b"\x80"]):
        broker.sock.send_multipart([broker.identity, *frames])
    job = assign(broker)
    assert broker.recv(worker, protocol.Done, where=lambda m: m.job_id == job.id).exit_code == 0


def test_silent_broker_means_reconnect_and_a_new_hello(rig):
    _, broker, worker, _ = rig(liveness=4)
    broker.beating = False
    broker.recv(worker, protocol.Heartbeat)
    # the broker says nothing back: after liveness x interval the agent says Hello again
    broker.recv(worker, protocol.Hello, timeout=15)


def test_time_spent_away_from_the_poll_is_not_broker_silence(rig):
    _, broker, worker, _ = rig()
    connection = worker.session.sock
    worker.tick(time.monotonic() + 60)    # as after a minute of work between two polls
    assert worker.session.sock is connection
    broker.recv(worker, protocol.Heartbeat)   # and the beats go on on that connection


def test_broker_heartbeat_acknowledges_done_and_orphans_are_stopped(rig):
    cfg, broker, worker, _ = rig(f'runner = "subprocess"\ncommand = {json.dumps(SLEEP)}')
    quick = assign(broker, "0")
    broker.recv(worker, protocol.Done, where=lambda m: m.job_id == quick.id)
    # from now on the broker's beats list no job (a silent broker would be reconnected to,
    # and a beat in flight lost with the old connection)
    broker.lists_worker_jobs = False
    wait_for(lambda: (broker.pump(worker), quick.id not in worker.jobs)[1], 15)   # acknowledged
    orphan = assign(broker, "30")
    broker.recv(worker, protocol.Started, where=lambda m: m.job_id == orphan.id)
    done = broker.recv(worker, protocol.Done, where=lambda m: m.job_id == orphan.id)
    assert done.reason == "cancelled"


def test_missing_workdir_fails_the_job_with_a_reason(rig, short_tmp):
    cfg, broker, worker, _ = rig()
    job = assign(broker, workdir=str(short_tmp / "nowhere"))
    done = broker.recv(worker, protocol.Done)
    assert done.exit_code == 127
    log = (Path(cfg.jobs_dir) / job.id / "output.log").read_text()
    assert "nowhere" in log and "does not exist" in log


def test_job_environment_and_placeholders(rig, short_tmp):
    cmd = [PY, "-c", "import os, sys; open(os.environ['LUZIA_JOB_DIR'] + '/env', 'w').write("
                     "repr([os.environ[k] for k in ('LUZIA_JOB_ID', 'LUZIA_PROJECT', 'LUZIA_ATTEMPT',"
                     " 'LUZIA_PROGRESS_FILE')] + sys.argv[1:] + [os.getcwd()]))",
           "{job_id}", "{project}", "x{task_file}", "{workdir}"]
    cfg, broker, worker, _ = rig(f'runner = "subprocess"\ncommand = {json.dumps(cmd)}')
    work = short_tmp / "w"
    work.mkdir()
    job = assign(broker, "{job_id}", workdir=str(work))
    assert broker.recv(worker, protocol.Done).exit_code == 0
    jobdir = Path(cfg.jobs_dir) / job.id
    seen = eval((jobdir / "env").read_text())
    assert seen == [job.id, "demo", "1", str(jobdir / "progress.md"), job.id, "demo",
                    f"x{jobdir}/task.txt", str(work), str(work)]
    assert (jobdir / "task.txt").read_text() == "{job_id}"


def test_disconnect_gets_a_new_hello(rig):
    _, broker, worker, _ = rig()
    broker.send(protocol.Disconnect(reason="who are you"))
    broker.recv(worker, protocol.Hello)


def test_hello_says_the_protocol_and_a_refusal_is_logged_once_and_tried_again_later(rig, caplog):
    from luzia import __version__
    _, broker, worker, hello = rig(liveness=20)    # it tries again after 1 s of silence, not 5
    assert (hello.protocol, hello.version) == (protocol.PROTOCOL, __version__)
    job = assign(broker)
    broker.recv(worker, protocol.Started)
    broker.beating = False
    why = "this agent is protocol version 2, the broker 3 (Luzia 9.0, serving protocol 3 and newer)"
    refusal = protocol.Disconnect(reason=f"refused: {why}: upgrade the agent", refused=True)
    broker.send(refusal)

    def errors() -> int:
        return sum(why in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    wait_for(lambda: worker.turn(0.01) or errors(), 10)
    assert worker.session.refused and job.id in worker.jobs    # its jobs keep running
    broker.recv(worker, protocol.Hello, timeout=30)     # later: after the broker's silence
    broker.send(refusal)
    wait_for(lambda: worker.turn(0.01) or any(
        "still refused" in r.getMessage() for r in caplog.records), 10)
    assert errors() == 1                                # one ERROR, then warnings
    broker.send(protocol.Welcome(heartbeat_interval=0.05))
    wait_for(lambda: worker.turn(0.01) or not worker.session.refused, 10)


def test_done_is_sent_again_while_the_broker_still_lists_the_job(rig):
    _, broker, worker, _ = rig()
    job = assign(broker, "quick")
    broker.recv(worker, protocol.Done, where=lambda m: m.job_id == job.id)
    # the broker keeps listing it (its Done was lost): a second Done comes after an interval
    broker.recv(worker, protocol.Done, where=lambda m: m.job_id == job.id)
    assert job.id in worker.jobs


def test_welcome_drop_stops_the_job_without_a_done(rig):
    cfg, broker, worker, _ = rig(f'runner = "subprocess"\ncommand = {json.dumps(SLEEP)}')
    job = assign(broker, "30")
    broker.recv(worker, protocol.Started)
    jobdir = Path(cfg.jobs_dir) / job.id
    jd = JobDir(jobdir.parent, job.id)
    wait_for(jd.pid, 15)
    broker.send(protocol.Disconnect())
    broker.recv(worker, protocol.Hello)
    broker.send(protocol.Welcome(heartbeat_interval=0.05, drop=[job.id]))
    wait_for(lambda: (worker.turn(0.01), job.id not in worker.jobs)[1], 10)
    assert jd.exit_code() == 128 + 15
    assert not any(isinstance(m, protocol.Done) for m in broker.got)
    assert jd.status().acked is True


def test_gpu_readings_go_into_heartbeats(short_tmp, monkeypatch):
    from luzia.agents.metrics import GpuReading, Gpus
    home = short_tmp / "h"
    home.mkdir()
    cfg = agent_config(home, 'runner = "subprocess"')
    broker = FakeBroker(cfg)
    worker = Worker(cfg, ctx=zmq.Context(),
                    gpus=Gpus(reader=lambda: GpuReading(memory=0.5, util=0.25, free_gb=12.0)))
    try:
        beat = broker.recv(worker, protocol.Heartbeat)
        assert (beat.gpu_memory, beat.gpu_util, beat.gpu_free_gb) == (0.5, 0.25, 12.0)
    finally:
        worker.close()
        worker.ctx.term()
        broker.close()


def test_health_ping_answers(rig):
    cfg, broker, worker, _ = rig()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(f"ipc://{cfg.run_dir}/agent-{cfg.agent.name}")
        sock.send_multipart([b"junk"])
        sock.send_multipart(protocol.encode(protocol.Request(req=5, op="ping")))

        def answered():
            worker.turn(0.01)
            return sock.poll(0) and protocol.decode(sock.recv_multipart())
        reply = wait_for(answered, 15)
        assert reply.req == 5 and reply.ok and reply.result["name"] == cfg.agent.name
        assert reply.result["running"] == 0 and reply.result["pid"] > 0
    finally:
        sock.close(0)
        ctx.term()


def test_tmux_pane_input_reaches_the_command_through_the_pty(rig, tmux_socket):
    ask = [PY, "-c", "import sys; print('tty' if sys.stdin.isatty() else 'pipe', flush=True);"
                     " print('got', input('name? '))"]
    cfg, broker, worker, _ = rig(f'runner = "tmux"\ntmux_socket = "{tmux_socket}"\n'
                                 f'command = {json.dumps(ask)}')
    job = assign(broker, "x")
    started = broker.recv(worker, protocol.Started)
    log = Path(cfg.jobs_dir) / job.id / "output.log"
    broker.recv(worker, protocol.Progress, where=lambda m: "name?" in "".join(m.tail))
    subprocess.run(["tmux", "-L", tmux_socket, "send-keys", "-t", started.session, "luzia", "Enter"],
                   check=True)
    done = broker.recv(worker, protocol.Done)
    assert done.exit_code == 0 and "got luzia" in done.tail
    assert log.read_text().startswith("tty")


def test_a_job_started_by_the_subprocess_runner_is_readopted_by_a_tmux_agent(rig, tmux_socket):
    cfg, broker, worker, _ = rig(f'runner = "subprocess"\ncommand = {json.dumps(SLEEP)}')
    job = assign(broker, "30")
    broker.recv(worker, protocol.Started)
    worker.close()
    cfg = agent_config(Path(cfg.home), f'runner = "tmux"\ntmux_socket = "{tmux_socket}"\n'
                               f'command = {json.dumps(SLEEP)}')
    again = Worker(cfg, ctx=worker.ctx)
    try:
        hello = broker.recv(again, protocol.Hello)
        assert [(h.job_id, h.exit_code) for h in hello.held] == [(job.id, None)]
        broker.send(protocol.Welcome(heartbeat_interval=0.05, adopt=[job.id]))
        broker.send(protocol.Cancel(job_id=job.id))
        done = broker.recv(again, protocol.Done)
        assert done.reason == "cancelled" and done.exit_code == 128 + 15
    finally:
        again.close()


def test_an_assign_repeated_after_the_run_ended_reports_that_run_instead_of_rerunning(rig):
    once = [PY, "-c", "import sys; open(sys.argv[1], 'a').write('ran\\n')", "{job_dir}/runs"]
    cfg, broker, worker, _ = rig(f'runner = "subprocess"\ncommand = {json.dumps(once)}')
    job = assign(broker, "once")
    broker.recv(worker, protocol.Done, where=lambda m: m.job_id == job.id and m.attempt == 1)
    # a slow agent: the broker gave up on attempt 1 and assigns the job again as attempt 2
    broker.send(protocol.Assign(job=job, attempt=2))
    assert broker.recv(worker, protocol.Started, where=lambda m: m.attempt == 2).job_id == job.id
    done = broker.recv(worker, protocol.Done, where=lambda m: m.job_id == job.id and m.attempt == 2)
    assert done.exit_code == 0
    assert (Path(cfg.jobs_dir) / job.id / "runs").read_text() == "ran\n"


def test_an_assign_repeated_while_the_run_goes_on_continues_it_under_the_new_attempt(rig):
    cfg, broker, worker, _ = rig(f'runner = "subprocess"\ncommand = {json.dumps(SLEEP)}')
    job = assign(broker, "30")
    first = broker.recv(worker, protocol.Started, where=lambda m: m.job_id == job.id)
    jobdir = Path(cfg.jobs_dir) / job.id
    jd = JobDir(jobdir.parent, job.id)
    pid = wait_for(lambda: (worker.turn(0.01), jd.pid())[1], 15)
    # the broker took the run for lost and assigns the job again: the same run carries on
    broker.send(protocol.Assign(job=job, attempt=2))
    again = broker.recv(worker, protocol.Started, where=lambda m: m.attempt == 2)
    assert (again.job_id, again.session) == (job.id, first.session)
    assert jd.pid() == pid and worker.jobs[job.id].attempt == 2
    broker.send(protocol.Cancel(job_id=job.id))
    done = broker.recv(worker, protocol.Done, where=lambda m: m.job_id == job.id)
    assert (done.attempt, done.reason) == (2, "cancelled")
