"""Job directories, the wrapper and the demo agent, without a broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from luzia import config, protocol
from luzia.agents.jobdir import JobDir, build_argv, prune
from luzia.ids import new_job_id
from tests.helpers import wait_for

PY = sys.executable


def cfg_with(home: Path, command: list[str]) -> config.Config:
    (home / "luzia.toml").write_text(f'home = "{home}"\n[agent]\ncommand = {json.dumps(command)}\n'
                                     '[agent.commands]\ntext = ["writer", "{task_file}"]\n')
    return config.load(env={"LUZIA_CONFIG": str(home / "luzia.toml")})


def spec(task: str = "t", **kw) -> protocol.JobSpec:
    return protocol.JobSpec(id=new_job_id(), project="demo", task=task, user="u", **kw)


def test_argv_placeholders_are_replaced_and_task_text_is_never_expanded(short_tmp):
    cfg = cfg_with(short_tmp, ["agent", "--id={job_id}", "{task}", "in {workdir}: {task}"])
    job = spec("{job_id} {project} $(x)", type="code")
    argv = build_argv(cfg, job, short_tmp / job.id, "/w")
    assert argv == ["agent", f"--id={job.id}", "{job_id} {project} $(x)",
                    "in /w: {job_id} {project} $(x)"]
    text = spec(type="text")
    assert build_argv(cfg, text, short_tmp / text.id, "/w") == ["writer", f"{short_tmp / text.id}/task.txt"]


def test_progress_and_tail_are_read_safely(short_tmp):
    jd = JobDir(short_tmp, new_job_id())
    jd.path.mkdir()
    assert jd.progress() == (-1.0, "")
    jd.progress_file.write_text("# notes\n37% step 3/8: thinking\n90% later\n")
    assert jd.progress() == (37.0, "step 3/8: thinking")
    jd.progress_file.write_text("just words\n")
    assert jd.progress() == (-1.0, "just words")
    jd.output.write_bytes(b"one\n\x1b[31mred\x1b[0m\r\n" + b"x" * 5000 + b"\n\n")
    tail = jd.tail(2)
    assert tail == ["red", "x" * protocol.MAX_LINE]
    data, size = jd.read_log(4, 3)
    assert data == b"\x1b[3" and size == jd.output.stat().st_size


def test_prune_keeps_the_newest_finished_and_every_active_job(short_tmp):
    ids = []
    for i in range(5):
        jd = JobDir(short_tmp, new_job_id())
        jd.path.mkdir()
        (jd.path / "exit_code").write_text("0\n")
        os.utime(jd.path / "exit_code", (1000 + i, 1000 + i))
        ids.append(jd.id)
    running = JobDir(short_tmp, new_job_id())
    running.path.mkdir()
    assert prune(short_tmp, 2, active={ids[0]}) == 2
    left = {p.name for p in short_tmp.iterdir()}
    assert left == {ids[0], ids[3], ids[4], running.id}


def make_job(home: Path, command: list[str], task: str = "t", **kw) -> JobDir:
    cfg = cfg_with(home, command)
    job = spec(task, **kw)
    jd = JobDir(Path(cfg.jobs_dir), job.id)
    jd.create(cfg, job, attempt=1)
    jd.set_status(runner="subprocess")     # the runner's first note writes meta.json
    return jd


def wrap(jd: JobDir, *flags: str) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", "luzia.agents.wrap", str(jd.path), *flags],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def test_wrapper_records_output_and_exit_code_with_and_without_a_pty(short_tmp):
    for flags in ((), ("--pty",)):
        jd = make_job(short_tmp, [PY, "-c", "import sys; print('out'); print('err', file=sys.stderr);"
                                            " sys.exit(3)"])
        assert wrap(jd, *flags).wait(20) == 0
        assert jd.exit_code() == 3, flags
        log = jd.output.read_text()
        assert "out" in log and "err" in log
        assert jd.pid() > 0


def test_wrapper_reports_death_by_signal_as_128_plus_signum(short_tmp):
    jd = make_job(short_tmp, [PY, "-c", "import time; print('up', flush=True); time.sleep(30)"])
    proc = wrap(jd)
    wait_for(lambda: jd.pid() and "up" in jd.output.read_text(), 10)
    os.killpg(jd.pid(), signal.SIGTERM)
    assert proc.wait(10) == 0
    assert jd.exit_code() == 128 + signal.SIGTERM


def test_wrapper_forwards_sigterm_to_the_command(short_tmp):
    jd = make_job(short_tmp, [PY, "-c", "import time; print('up', flush=True); time.sleep(30)"])
    proc = wrap(jd, "--pty")
    wait_for(lambda: jd.pid() and "up" in jd.output.read_text(), 10)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert jd.exit_code() == 128 + signal.SIGTERM


def test_wrapper_command_not_found_is_127(short_tmp):
    for flags in ((), ("--pty",)):
        jd = make_job(short_tmp, ["/no/such/agent", "{task}"])
        assert wrap(jd, *flags).wait(20) == 0
        assert jd.exit_code() == 127
        assert "/no/such/agent" in jd.output.read_text()


def test_demo_agent_reports_progress_and_fails_on_request(short_tmp):
    progress = short_tmp / "progress.md"
    env = {**os.environ, "LUZIA_DEMO_SECONDS": "0.2", "LUZIA_PROGRESS_FILE": str(progress)}
    t0 = time.monotonic()
    out = subprocess.run([PY, "-m", "luzia.agents.demo", "fix \x1b[31m the $(bug)"],
                         capture_output=True, text=True, env=env, timeout=20)
    assert out.returncode == 0 and time.monotonic() - t0 < 10
    assert "\x1b" not in out.stdout and "$(bug)" in out.stdout
    assert progress.read_text().startswith("100% step 8/8: thinking about")
    out = subprocess.run([PY, "-m", "luzia.agents.demo", "please FAIL_DEMO"],
                         capture_output=True, text=True, env=env, timeout=20)
    assert out.returncode == 1
