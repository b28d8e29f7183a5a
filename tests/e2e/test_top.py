"""`luzia top` in a real tmux pane (private socket) against a real broker and agent: it
renders, updates when a job is submitted, and quits on `q`."""

from __future__ import annotations

import json
import shlex
import subprocess

from tests.fleet import PY, SLEEPER, LocalFleet, fleet_config
from tests.helpers import wait_for


def test_top_renders_updates_and_quits_on_q(short_tmp, tmux_socket):
    fleet = LocalFleet(short_tmp / "f", fleet_config(f'slots = 2\nrunner = "subprocess"\n{SLEEPER}'))
    try:
        fleet.start_broker()
        fleet.start_agent("gpu1")
        wait_for(lambda: "gpu1" in fleet.live_agents(), 15)
        env = {k: v for k, v in fleet.env.items() if k.startswith(("LUZIA_", "PYTHON"))}
        env.pop("NO_COLOR", None)
        command = " ".join(["env", "-u", "NO_COLOR", *(shlex.quote(f"{k}={v}") for k, v in env.items()),
                            shlex.quote(PY), "-m", "luzia.cli", "top", "--interval", "0.5"])
        tmux = ["tmux", "-L", tmux_socket]
        subprocess.run([*tmux, "new-session", "-d", "-s", "top", "-x", "140", "-y", "45",
                        f"{command}; echo EXIT=$?; sleep 60"], check=True)

        def screen() -> str:
            return subprocess.run([*tmux, "capture-pane", "-p", "-t", "top"], capture_output=True,
                                  text=True).stdout
        def shows(*parts: str) -> bool:
            text = screen()      # one capture: a redraw may be half done
            return all(p in text for p in parts)
        wait_for(lambda: shows("QUEUE  0 pending", "gpu1", "AGENTS  1", "RUNNING  0", "ALERTS",
                               "q quits", "all good"), 15, message="top renders")
        job = fleet.submit("demo", "30")
        wait_for(lambda: shows(job, "RUNNING  1", "1/2"), 15, message="top shows the job")
        subprocess.run([*tmux, "send-keys", "-t", "top", "q"], check=True)
        wait_for(lambda: "EXIT=0" in screen(), 10, message="top quits on q")
        snapshot = json.loads(fleet.cli("top", "--json").stdout)
        assert [j["id"] for j in snapshot["running"]] == [job]
        assert "AGENTS" in fleet.cli("top").stdout.decode()      # no terminal: one plain snapshot
        fleet.control("jobs.cancel", ids=[job])
        wait_for(lambda: fleet.state(job) == "killed", 15)
    finally:
        fleet.close()
