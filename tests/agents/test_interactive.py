"""The interactive runner: a long-lived fake REPL per slot on a private tmux server, driven by
a real agent (Worker) against the fake broker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from luzia import protocol
from luzia.agents.repl import new_lines
from luzia.agents.tmuxctl import UNKNOWN, TmuxController
from luzia.agents.worker import Worker
from tests.agents.fakebroker import assign
from tests.helpers import wait_for

FAKE_REPL = [sys.executable, str(Path(__file__).with_name("fake_repl.py"))]
PROMPT = r"^>$"


def interactive(tmux_socket: str, slots: int = 1, **extra) -> str:
    settings = {"command": FAKE_REPL, "prompt": PROMPT, "send_delay": 0.05,
                "start_timeout": 15.0, **extra}
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
    return (f'runner = "interactive"\nslots = {slots}\ntmux_socket = "{tmux_socket}"\n'
            f"[interactive]\n{lines}\n")


def output(cfg, job) -> str:
    return (Path(cfg.jobs_dir) / job.id / "output.log").read_text()


def pane_pid(tmux_socket: str, session: str) -> str:
    return subprocess.run(["tmux", "-L", tmux_socket, "list-panes", "-t", f"={session}:", "-F",
                           "#{pane_pid}"], capture_output=True, text=True).stdout.strip()


def test_new_lines_is_what_the_job_added():
    before = ["fake repl 1 ready", ">"]
    after = ["fake repl 1 ready", "> hi", "you said: hi", ">"]
    assert new_lines(before, after) == ["> hi", "you said: hi"]
    assert new_lines(["a", "b", "c"], ["a", "B", "c", "d"]) == ["B", "d"]


def test_controller_waits_types_literally_and_goes_through_the_prefix(short_tmp, tmux_socket):
    tmpdir = short_tmp / "tx"
    tmpdir.mkdir()
    ctl = TmuxController(tmux_socket, prefix=["env", f"TMUX_TMPDIR={tmpdir}"])
    try:
        ctl.new_session("s", FAKE_REPL, str(short_tmp))
        # the prefix took effect: the server's socket is under TMUX_TMPDIR, not the default
        assert list(tmpdir.glob(f"*/{tmux_socket}"))
        assert ctl.wait_for_prompt("s", PROMPT, 15)
        seen = ctl.capture("s")
        ctl.send_keys("s", "C-c $(touch x) 'q'", delay=0.05)
        assert ctl.wait_for_prompt("s", PROMPT, 15, since=seen)
        assert "you said: C-c $(touch x) 'q'" in ctl.capture("s", history=True)
        seen = ctl.capture("s")
        ctl.send_keys("s", "line one\nline two", delay=0.05)     # pasted; this REPL reads lines
        assert ctl.wait_for_prompt("s", PROMPT, 15, since=seen)
        wait_for(lambda: "you said: line two" in "\n".join(ctl.capture("s")), 15)
        assert "you said: line one" in "\n".join(ctl.capture("s"))
        assert ctl.wait_for_idle("s", idle=0.3, timeout=15)
        assert ctl.pane_dead("s") is None and ctl.pane_dead("nope") == -1
        ctl.send_keys("s", "exit 4", delay=0.05)
        # tmux records the status unless it saw the terminal close first
        assert wait_for(lambda: ctl.pane_dead("s"), 15) in (4, UNKNOWN)
    finally:
        ctl.run("kill-server", check=False)


def test_jobs_take_turns_on_one_repl_and_log_their_own_output(rig, tmux_socket):
    cfg, broker, worker, _ = rig(interactive(tmux_socket))
    first = assign(broker, "first task")
    started = broker.recv(worker, protocol.Started)
    assert started.session == f"luzia-{cfg.agent.name}-slot-0"
    assert broker.recv(worker, protocol.Done).exit_code == 0
    repl = pane_pid(tmux_socket, started.session)
    second = assign(broker, "second task")
    done = broker.recv(worker, protocol.Done, where=lambda m: m.job_id == second.id)
    assert done.exit_code == 0 and "you said: second task" in done.tail
    assert pane_pid(tmux_socket, started.session) == repl          # the same REPL answered
    log = output(cfg, second)
    assert "you said: second task" in log and "first task" not in log
    assert not log.rstrip().endswith(">")                           # the prompt is not output
    assert "you said: first task" in output(cfg, first)


def test_a_repl_that_exits_fails_its_job_and_is_restarted_for_the_next(rig, tmux_socket):
    cfg, broker, worker, _ = rig(interactive(tmux_socket))
    dying = assign(broker, "exit 3")
    assert broker.recv(worker, protocol.Done).exit_code in (3, 1)    # 1: status unknown
    assert "the REPL exited during the job" in output(cfg, dying)
    after = assign(broker, "still there?")
    assert broker.recv(worker, protocol.Done, where=lambda m: m.job_id == after.id).exit_code == 0
    log = output(cfg, after)
    assert "had exited" in log and "restarting it" in log and "you said: still there?" in log


def test_idle_pane_ends_a_job_that_never_shows_the_prompt(rig, tmux_socket):
    cfg, broker, worker, _ = rig(interactive(tmux_socket, done="idle", idle=0.4))
    job = assign(broker, "quiet")
    assert broker.recv(worker, protocol.Done).exit_code == 0
    assert "going quiet" in output(cfg, job)


def test_cancel_interrupts_the_repl_which_then_serves_the_next_job(rig, tmux_socket):
    cfg, broker, worker, _ = rig(interactive(tmux_socket))
    job = assign(broker, "quiet")
    broker.recv(worker, protocol.Started)
    # output is copied while the job runs, not only at its end
    broker.recv(worker, protocol.Progress, where=lambda m: "going quiet" in m.tail)
    broker.send(protocol.Cancel(job_id=job.id))
    done = broker.recv(worker, protocol.Done)
    assert (done.exit_code, done.reason) == (143, "cancelled")
    assert "the REPL got Ctrl-C" in output(cfg, job)
    nxt = assign(broker, "after the cancel")
    done = broker.recv(worker, protocol.Done, where=lambda m: m.job_id == nxt.id)
    assert done.exit_code == 0
    assert "restarting" not in output(cfg, nxt)                 # Ctrl-C brought the prompt back


def test_restarted_agent_readopts_a_job_in_flight_and_reports_its_end(rig, tmux_socket):
    cfg, broker, worker, _ = rig(interactive(tmux_socket, slots=2))
    slow = assign(broker, "sleep 1.5")
    s1 = broker.recv(worker, protocol.Started)
    other = assign(broker, "sleep 0.2")
    s2 = broker.recv(worker, protocol.Started, where=lambda m: m.job_id == other.id)
    assert {s1.session[-1], s2.session[-1]} == {"0", "1"}       # two slots, two REPLs
    worker.close()                  # the agent goes away; the watchers and REPLs stay
    again = Worker(cfg, ctx=worker.ctx)
    try:
        hello = broker.recv(again, protocol.Hello)
        assert slow.id in {h.job_id for h in hello.held}
        broker.send(protocol.Welcome(heartbeat_interval=0.05, adopt=[h.job_id for h in hello.held]))
        done = broker.recv(again, protocol.Done, where=lambda m: m.job_id == slow.id, timeout=20)
        assert done.exit_code == 0 and "slept" in output(cfg, slow)
    finally:
        again.close()


def test_interactive_runner_needs_a_repl_command(short_tmp):
    from luzia import config
    from luzia.errors import ConfigError
    path = short_tmp / "luzia.toml"
    path.write_text(f'home = "{short_tmp}"\n[agent]\nrunner = "interactive"\n')
    with pytest.raises(ConfigError, match="interactive.command is required"):
        config.load(env={"LUZIA_CONFIG": str(path)})


def test_the_repl_is_restarted_in_the_next_jobs_work_directory(rig, tmux_socket, short_tmp):
    cfg, broker, worker, _ = rig(interactive(tmux_socket))
    here, there = short_tmp / "here", short_tmp / "there"
    here.mkdir()
    there.mkdir()
    first = assign(broker, "pwd", workdir=str(here))
    assert broker.recv(worker, protocol.Done).exit_code == 0
    second = assign(broker, "pwd", workdir=str(there))
    assert broker.recv(worker, protocol.Done, where=lambda m: m.job_id == second.id).exit_code == 0
    assert str(here) in output(cfg, first)
    assert f"restarting it in {there}" in output(cfg, second)
    assert output(cfg, second).rstrip().endswith(str(there))
