"""`luzia-supervisor` for real: the real broker and agent as its children."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import psutil
import pytest

from tests.fleet import PY, SLEEPER, LocalFleet
from tests.helpers import wait_for


def test_real_supervisor_runs_broker_and_agent_restarts_and_stops_cleanly(short_tmp):
    fleet = LocalFleet(short_tmp / "f", '[supervisor]\nping_interval = 0.5\n'
                                        '[agent]\nrunner = "subprocess"\n[broker]\nheartbeat_interval = 0.2\n'
                                        '[scheduler]\ncpu_ceiling = 1.0\nmemory_ceiling = 1.0\n')
    sup = fleet.start("supervisor", [PY, "-m", "luzia.supervisor"])
    try:
        def status():
            out = fleet.cli("supervisor", "status", "--json")
            return {r["name"]: r for r in json.loads(out.stdout or "[]")} if out.returncode == 0 else {}
        wait_for(lambda: [r["state"] for r in status().values()] == ["running", "running"], 20)
        rows = status()
        assert set(rows["broker"]) == {"name", "state", "pid", "uptime", "restarts"}
        os.kill(rows["broker"]["pid"], signal.SIGKILL)
        wait_for(lambda: (b := status().get("broker")) and b["restarts"] == 1 and b["state"] == "running", 10)
        job_id = fleet.submit("demo", "after a broker restart")
        wait_for(lambda: fleet.state(job_id) == "completed", 20)
        pids = [r["pid"] for r in status().values()]
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(15) == 0
        assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
        out = (fleet.home / "supervisor.out").read_text()
        assert "luzia-supervisor: stopped" in out
        assert (fleet.home / "log" / "broker.log").stat().st_size > 0
        assert (fleet.home / "log" / "agent.log").stat().st_size > 0
    finally:
        fleet.close()


@pytest.mark.long
def test_sigterm_to_the_supervisor_leaves_the_tmux_job_running_and_the_next_one_adopts_it(
        short_tmp, tmux_socket):
    fleet = LocalFleet(short_tmp / "f",
                       '[supervisor]\nping_interval = 0.5\n'
                       f'[agent]\nrunner = "tmux"\ntmux_socket = "{tmux_socket}"\n{SLEEPER}\n'
                       '[broker]\nheartbeat_interval = 0.2\n'
                       '[scheduler]\ncpu_ceiling = 1.0\nmemory_ceiling = 1.0\n')
    session = ["tmux", "-L", tmux_socket, "has-session", "-t"]
    try:
        sup = fleet.start("supervisor", [PY, "-m", "luzia.supervisor"])
        go = short_tmp / "go"                # the job runs until the test makes it
        job_id = fleet.submit("demo", str(go))
        wait_for(lambda: fleet.state(job_id) == "running", 20)
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(15) == 0
        assert subprocess.run([*session, f"luzia-{job_id}"], capture_output=True).returncode == 0
        fleet.start("supervisor2", [PY, "-m", "luzia.supervisor"])   # as systemd would, after a restart
        wait_for(lambda: fleet.live_agents(), 30, message="the new agent")
        go.touch()
        wait_for(lambda: fleet.state(job_id) == "completed", 30)
        attempts = (fleet.job(job_id) or {}).get("attempts") or []
        assert len(attempts) == 1          # adopted, not run a second time
    finally:
        fleet.close()
