"""A job's environment is its agent's plus its own, never a tmux server's (issue 17, item 3).

Two fleets on one host, both with the default tmux socket, each agent with its own mark in
its environment; then one agent restarted with a new mark while a job of its keeps its tmux
server alive. Every job must see its own fleet's LUZIA_HOME and its own agent's current
environment. Before, the first agent to start a tmux server gave every later session on it
that process's environment: fleet B's jobs ran with fleet A's LUZIA_HOME, and a restarted
agent's jobs with its old environment."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

from tests.fleet import LocalFleet, fleet_config, jobs_json
from tests.helpers import wait_for

SCRIPT = ('echo "home=$LUZIA_HOME mark=$AGENT_MARK job=$LUZIA_JOB_ID"; '
          'if [ "$1" = wait ]; then while [ ! -e "$LUZIA_HOME/stop" ]; do sleep 0.1; done; fi')
COMMAND = f'runner = "tmux"\ncommand = ["/bin/sh", "-c", \'{SCRIPT}\', "sh", "{{task}}"]'


def seen(fleet: LocalFleet, job_id: str) -> dict[str, str]:
    """What the job printed about its environment (its first output line)."""
    log = Path(fleet.home) / "jobs" / job_id / "output.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    m = re.search(r"home=(\S*) mark=(\S*) job=(\S*)", text)
    return {"home": m.group(1), "mark": m.group(2), "job": m.group(3)} if m else {}


def run_one(fleet: LocalFleet, task: str) -> str:
    job_id = fleet.submit("demo", task)
    wait_for(lambda: seen(fleet, job_id), 60, message=f"job {job_id} printed its environment")
    return job_id


def servers_of(job_ids: list[str]) -> list[str]:
    """The tmux servers (of this user) that run one of these jobs' sessions."""
    root = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}"
    found = []
    for sock in root.glob("*") if root.is_dir() else []:
        out = subprocess.run(["tmux", "-L", sock.name, "list-sessions", "-F", "#{session_name}"],
                             capture_output=True, text=True)
        if any(f"luzia-{j}" in out.stdout for j in job_ids):
            found.append(sock.name)
    return found


def test_each_job_gets_its_own_agents_environment_with_the_default_tmux_socket(make_fleet):
    config = COMMAND
    assert "tmux_socket" not in config
    fleet_a = make_fleet(fleet_config(config, "per_user = false"))
    fleet_b = make_fleet(fleet_config(config, "per_user = false"))
    waiting: list[str] = []
    try:
        fleet_a.start_broker()
        fleet_a.start_agent("a", env={"AGENT_MARK": "a1"})
        fleet_b.start_broker()
        fleet_b.start_agent("b", env={"AGENT_MARK": "b1"})
        wait_for(lambda: fleet_a.live_agents() == {"a"} and fleet_b.live_agents() == {"b"}, 30)

        # a job of each fleet that waits keeps its tmux server alive through what follows
        waiting = [run_one(fleet_a, "wait"), run_one(fleet_b, "wait")]
        assert seen(fleet_a, waiting[0])["home"] == str(fleet_a.home)
        assert seen(fleet_b, waiting[1]) == {"home": str(fleet_b.home), "mark": "b1",
                                             "job": waiting[1]}
        # two fleets never share a tmux server
        assert len(servers_of(waiting)) == 2, servers_of(waiting)

        # the agent restarted with a new environment: its next job has it, not the old one
        fleet_a.kill("agent-a", signal.SIGTERM)
        fleet_a.start_agent("a", env={"AGENT_MARK": "a2"})
        wait_for(lambda: fleet_a.live_agents() == {"a"}, 30)
        again = run_one(fleet_a, "now")
        assert seen(fleet_a, again) == {"home": str(fleet_a.home), "mark": "a2", "job": again}
        wait_for(lambda: fleet_a.state(again) == "completed", 60)

        # `luzia attach` finds a job's session on its fleet's server (it reads the socket
        # from the job's record, or computes the same default from the same config)
        attach = fleet_b.cli("attach", waiting[1], "--json")
        assert attach.returncode == 0, attach.stderr.decode()
        argv = jobs_json(attach)["command"]
        assert f"luzia-{waiting[1]}" in argv
        socket = argv[argv.index("-L") + 1]
        assert subprocess.run(["tmux", "-L", socket, "has-session", "-t",
                               f"luzia-{waiting[1]}"]).returncode == 0
    finally:
        for fleet in (fleet_a, fleet_b):
            (fleet.home / "stop").touch()
        try:
            wait_for(lambda: not servers_of(waiting), 30, message="the waiting jobs ended")
        finally:
            for sock in servers_of(waiting):    # a job that waits for another fleet's file
                for job_id in waiting:
                    subprocess.run(["tmux", "-L", sock, "kill-session", "-t", f"luzia-{job_id}"],
                                   capture_output=True)
