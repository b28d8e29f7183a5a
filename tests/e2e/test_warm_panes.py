"""Warm panes (luzia/agents/warm.py): the tmux runner keeps idle sessions whose wrapper is
already started, and a job is handed to one. What this must not cost: an idle session is
never a job (not in the broker's listing, not `luzia attach`-able, not re-adopted), a job
started in one keeps every promise of a cold one (its own agent's environment, its cwd,
output.log, its exit code, it outlives a kill -9 of its agent), and idle sessions end with
their agent, even a killed one; what a killed agent left, the next one removes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from luzia.jobstatus import read_exit_code
from tests.fleet import LocalFleet, fleet_config, jobs_json
from tests.helpers import wait_for

SCRIPT = ('echo "mark=$AGENT_MARK job=$LUZIA_JOB_ID pwd=$(pwd)"; if [ "$1" = wait ]; then '
          'while [ ! -e "$LUZIA_HOME/stop" ]; do sleep 0.05; done; fi; exit 3')
CONFIG = f'runner = "tmux"\nslots = 2\ncommand = ["/bin/sh", "-c", \'{SCRIPT}\', "sh", "{{task}}"]'


def sessions(socket: str) -> set[str]:
    out = subprocess.run(["tmux", "-L", socket, "list-sessions", "-F", "#{session_name}"],
                         capture_output=True, text=True)
    return set(out.stdout.split())


def idle(socket: str) -> set[str]:
    return {s for s in sessions(socket) if s.startswith("lzwarm-")}


def pane_cmdline(socket: str, session: str) -> list[str]:
    out = subprocess.run(["tmux", "-L", socket, "list-panes", "-t", f"={session}:", "-F",
                          "#{pane_pid}"], capture_output=True, text=True)
    try:
        return psutil.Process(int(out.stdout.split()[0])).cmdline()
    except (IndexError, ValueError, psutil.Error):
        return []


def waiting(socket: str) -> bool:
    """Two idle sessions whose wrappers are started and connected to their agent (a job
    may find them ready: until then it starts cold, which is not what is tested here)."""
    names = idle(socket)
    return len(names) == 2 and all(connected(socket, name) for name in names)


def connected(socket: str, session: str) -> bool:
    out = subprocess.run(["tmux", "-L", socket, "list-panes", "-t", f"={session}:", "-F",
                          "#{pane_pid}"], capture_output=True, text=True)
    try:
        proc = psutil.Process(int(out.stdout.split()[0]))
        return "--idle" in proc.cmdline() and bool(proc.net_connections(kind="unix"))
    except (IndexError, ValueError, psutil.Error):
        return False


def printed(fleet: LocalFleet, job_id: str) -> dict[str, str]:
    log = Path(fleet.home) / "jobs" / job_id / "output.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    m = re.search(r"mark=(\S*) job=(\S*) pwd=(\S*)", text)
    return {"mark": m.group(1), "job": m.group(2), "pwd": m.group(3)} if m else {}


@pytest.mark.timeout(300)
def test_a_job_in_a_warm_pane_keeps_every_promise_and_idle_panes_end_with_their_agent(
        make_fleet, tmux_socket):
    fleet = make_fleet(fleet_config(f'{CONFIG}\ntmux_socket = "{tmux_socket}"'))
    fleet.start_broker()
    fleet.start_agent("a", env={"AGENT_MARK": "one"})
    wait_for(lambda: waiting(tmux_socket), 60, message="two idle sessions waiting")
    first_idle = idle(tmux_socket)
    assert all(s.startswith("lzwarm-a-") for s in first_idle)

    job_id = fleet.submit("demo", "wait")
    wait_for(lambda: printed(fleet, job_id), 60, message="the job printed its environment")
    meta = json.loads((fleet.home / "jobs" / job_id / "meta.json").read_text())
    assert printed(fleet, job_id) == {"mark": "one", "job": job_id, "pwd": meta["cwd"]}
    session = f"luzia-{job_id}"
    # it ran in a pane started before it: the pane's process is the idle wrapper
    wait_for(lambda: session in sessions(tmux_socket), 60, message="the job's session named")
    assert "--idle" in pane_cmdline(tmux_socket, session)
    # and one of the idle sessions became the job's (a new one replaces it)
    wait_for(lambda: len(idle(tmux_socket)) == 2 and idle(tmux_socket) != first_idle, 60,
             message="the idle sessions topped up")

    # an idle session is never a job: not listed, not attachable
    listed = jobs_json(fleet.cli("jobs", "--json"))
    assert [j["id"] for j in listed] == [job_id]
    refused = fleet.cli("attach", sorted(idle(tmux_socket))[0])
    assert refused.returncode != 0

    # kill -9 of the agent: the job runs on, the idle sessions end (their wrappers read EOF)
    fleet.kill("agent-a", signal.SIGKILL)
    wait_for(lambda: not idle(tmux_socket), 60, message="idle sessions ended with the agent")
    assert session in sessions(tmux_socket)

    # what a killed agent could leave: a job still under its idle session's name (killed
    # after handing the job over, before the rename), a stuck idle session, its socket file
    subprocess.run(["tmux", "-L", tmux_socket, "rename-session", "-t", f"={session}",
                    "lzwarm-a-1-2"], check=True)
    subprocess.run(["tmux", "-L", tmux_socket, "new-session", "-d", "-s", "lzwarm-a-1-1",
                    "sleep 600"], check=True)
    (fleet.home / "run" / "warm-999999999.sock").touch()
    fleet.start_agent("a", env={"AGENT_MARK": "two"})
    wait_for(lambda: "lzwarm-a-1-1" not in sessions(tmux_socket), 60,
             message="the left-over idle session removed")
    wait_for(lambda: session in sessions(tmux_socket), 60, message="the job's session named")
    wait_for(lambda: not (fleet.home / "run" / "warm-999999999.sock").exists(), 60)
    wait_for(lambda: len(idle(tmux_socket)) == 2, 60, message="the new agent's idle sessions")

    # the re-adopted job ends with its own exit code; a new job gets the new environment
    wait_for(lambda: fleet.state(job_id) == "running", 60)
    (fleet.home / "stop").touch()
    wait_for(lambda: fleet.state(job_id) == "failed", 60)
    again = fleet.submit("demo", "now")
    wait_for(lambda: fleet.state(again) == "failed", 60)
    assert printed(fleet, again)["mark"] == "two"
    for jid in (job_id, again):
        assert read_exit_code(fleet.home / "jobs" / jid) == 3
        assert fleet.job(jid)["exit_code"] == 3         # re-adopted, not "vanished" (-1)

    # the agent stopped for good: no idle session is left
    fleet.kill("agent-a", signal.SIGTERM)
    wait_for(lambda: not idle(tmux_socket), 60, message="idle sessions ended with the agent")
