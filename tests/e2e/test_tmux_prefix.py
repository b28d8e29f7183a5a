"""agent.tmux_prefix for real (seed 001's container sessions): the plain tmux runner runs
every tmux call through it, and `luzia attach` reaches the job's session through it too.
The prefix here is a recorder that logs its argv and runs the rest, as `docker exec -i box`
would run it inside a container."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time

import pytest

from tests.fleet import PY, SLEEPER, LocalFleet, fleet_config, jobs_json
from tests.helpers import wait_for

RECORDER = """#!/bin/sh
printf '%s\\n' "$*" >> "$LZ_RECORD"
exec "$@"
"""


@pytest.fixture
def fleet(short_tmp, tmux_socket):
    recorder = short_tmp / "in-box"
    recorder.write_text(RECORDER)
    recorder.chmod(0o755)
    record = short_tmp / "calls.txt"
    agent = (f'name = "here"\nrunner = "tmux"\ntmux_socket = "{tmux_socket}"\n'
             f'tmux_prefix = ["{recorder}"]\n{SLEEPER}')
    f = LocalFleet(short_tmp / "f", fleet_config(agent), env={"LZ_RECORD": str(record)})
    f.start_broker()
    f.start_agent("here")
    wait_for(lambda: "here" in f.live_agents(), 15)
    yield f, recorder, record, tmux_socket
    f.close()


def test_the_tmux_runner_and_attach_go_through_the_prefix(fleet):
    f, recorder, record, socket = fleet
    job_id = f.submit("demo", "30")
    wait_for(lambda: f.state(job_id) == "running", 30)
    calls = record.read_text().splitlines()
    assert f"tmux -L {socket} new-session -d -s luzia-{job_id}" in "\n".join(calls)
    assert all(c.startswith(f"tmux -L {socket} ") for c in calls), calls
    info = jobs_json(f.cli("attach", job_id, "--json"))
    assert info["here"] and info["session"] == f"luzia-{job_id}"
    assert info["command"] == [str(recorder), "tmux", "-L", socket, "attach", "-t", f"luzia-{job_id}"]

    master, slave = pty.openpty()          # a person's terminal, attached through the prefix
    proc = subprocess.Popen([PY, "-m", "luzia.cli", "attach", job_id],
                            env={**f.env, "TERM": "xterm"}, stdin=slave, stdout=slave,
                            stderr=slave, close_fds=True)
    os.close(slave)
    try:
        def clients() -> str:
            while select.select([master], [], [], 0)[0]:
                try:
                    os.read(master, 65536)
                except OSError:
                    break
            return subprocess.run(["tmux", "-L", socket, "list-clients", "-t", f"luzia-{job_id}"],
                                  capture_output=True, text=True).stdout
        wait_for(clients, 20, message="a client attached to the job's session")
        subprocess.run(["tmux", "-L", socket, "detach-client", "-s", f"luzia-{job_id}"], check=True)
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            clients()
            time.sleep(0.05)        # polling step while `luzia attach` sees its detach
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    calls = record.read_text()
    assert f"tmux -L {socket} has-session -t =luzia-{job_id}" in calls
    assert f"tmux -L {socket} attach -t luzia-{job_id}" in calls
    f.cli("cancel", job_id)
    wait_for(lambda: f.state(job_id) == "killed", 30)
