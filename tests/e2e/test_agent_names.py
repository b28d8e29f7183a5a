"""One live agent per name (issue 17, item 1), with real broker and agent processes.

Two hosts with the same short host name (the default agent name), or a copied config, give
two agents one name. Here a second state directory stands in for the second host: it is
what makes an agent another agent (its instance token is the host's machine id and its
state directory). The broker refuses the second while the first lives, and says so in both
logs and in `luzia agents status`; a restart of the first (same host, same state directory)
takes the name back at once; a second agent process on the same state directory refuses to
start."""

from __future__ import annotations

import signal
import subprocess

import pytest

from tests.fleet import PY, SLEEPER, LocalFleet, fleet_config
from tests.helpers import wait_for


def other_host(fleet: LocalFleet, name: str, home_name: str) -> subprocess.Popen:
    """An agent `name` with its own state directory (as on another host), connected to the
    fleet's broker."""
    home = fleet.home.parent / home_name
    home.mkdir()
    (home / "luzia.toml").write_text(
        f'home = "{home}"\n[broker]\nheartbeat_interval = 0.1\n'
        f'[agent]\nrunner = "subprocess"\n{SLEEPER}\n')
    log = open(fleet.home / f"agent-{home_name}.out", "ab")
    proc = subprocess.Popen(
        [PY, "-m", "luzia.agents", "--name", name, "--connect", f"ipc://{fleet.home}/run/agents"],
        env={**fleet.env, "LUZIA_HOME": str(home), "LUZIA_CONFIG": str(home / "luzia.toml")},
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    fleet.procs[f"agent-{home_name}"] = proc
    return proc


def agent_pid(fleet: LocalFleet, name: str) -> int | None:
    return next((a["pid"] for a in fleet.agents() if a["name"] == name and a["state"] == "live"),
                None)


@pytest.mark.long
def test_a_second_live_agent_under_a_taken_name_is_refused_and_takes_it_only_once_free(make_fleet):
    fleet = make_fleet(fleet_config(f'runner = "subprocess"\nslots = 2\n{SLEEPER}',
                                    "per_user = false"))
    fleet.start_broker()
    first = fleet.start_agent("gpu")
    wait_for(lambda: agent_pid(fleet, "gpu") == first.pid, 20)
    go = fleet.home / "go"                   # the jobs run until the test makes it
    jobs = [fleet.submit("demo", str(go)) for _ in range(2)]
    wait_for(lambda: all(fleet.state(j) == "running" for j in jobs), 30)

    second = other_host(fleet, "gpu", "h2")
    wait_for(lambda: "refused" in fleet.output("agent-h2"), 30, message="the second is refused")
    assert "refused" in fleet.output("broker") and "gpu" in fleet.output("broker")
    status = fleet.cli("agents", "status")
    assert status.returncode == 0, status.stderr.decode()
    assert "refused" in status.stdout.decode() and str(second.pid) in status.stdout.decode()

    # the first keeps its name and its jobs: each ran once, on it
    go.touch()
    wait_for(lambda: all(fleet.state(j) == "completed" for j in jobs), 60)
    for job_id in jobs:
        job = fleet.job(job_id)
        assert job["attempt"] == 1 and job["host"] == "gpu", job
    assert agent_pid(fleet, "gpu") == first.pid

    # once the first is gone for good, the name is free: the second takes it
    fleet.kill("agent-gpu")
    wait_for(lambda: agent_pid(fleet, "gpu") == second.pid, 90, message="the second takes over")
    assert fleet.state(fleet.submit("demo", "0")) in ("pending", "assigned", "running",
                                                       "completed")


def test_a_restarted_agent_takes_its_name_back_at_once_with_its_jobs(make_fleet):
    # a long liveness: the broker still takes the killed agent for live when the new one says Hello
    fleet = make_fleet(fleet_config(f'runner = "subprocess"\n{SLEEPER}')
                       .replace("liveness = 20", "liveness = 300"))
    fleet.start_broker()
    first = fleet.start_agent("gpu")
    wait_for(lambda: agent_pid(fleet, "gpu") == first.pid, 20)
    go = fleet.home / "go"                   # the job runs until the test makes it
    job_id = fleet.submit("demo", str(go))
    wait_for(lambda: fleet.state(job_id) == "running", 30)
    fleet.kill("agent-gpu")
    again = fleet.start_agent("gpu")
    wait_for(lambda: agent_pid(fleet, "gpu") == again.pid, 30, message="the restart is welcomed")
    go.touch()
    wait_for(lambda: fleet.state(job_id) == "completed", 60)
    assert fleet.job(job_id)["attempt"] == 1
    assert "refused" not in fleet.output("broker")


def test_a_second_agent_process_on_the_same_state_directory_refuses_to_start(make_fleet):
    fleet = make_fleet(fleet_config(f'runner = "subprocess"\n{SLEEPER}'))
    fleet.start_broker()
    first = fleet.start_agent("gpu")
    wait_for(lambda: agent_pid(fleet, "gpu") == first.pid, 20)
    out = subprocess.run([PY, "-m", "luzia.agents", "--name", "gpu"], env=fleet.env,
                         capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    err = out.stderr.decode()
    assert out.returncode == 75, err
    assert err.count("\n") == 1 and f"pid {first.pid}" in err and "gpu" in err, err
    assert first.poll() is None and agent_pid(fleet, "gpu") == first.pid
    first.send_signal(signal.SIGTERM)
