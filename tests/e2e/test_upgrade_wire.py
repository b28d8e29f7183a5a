"""A rolling upgrade on the wire (docs/DEPLOY.md, "Upgrading"): this release's broker with
an agent and a CLI of the previous release, f8da7fe's code taken from git and run with this
interpreter (its dependencies are this venv's). The old agent runs jobs; a job it started
in tmux survives its restart onto this release's agent (re-adoption across versions); a
broker that serves only newer agents refuses it with one line that both logs and
`luzia agents status` show; an old CLI is served, or told to upgrade."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from luzia import __version__, protocol
from tests.fleet import PY, LocalFleet, printed_id
from tests.helpers import wait_for

PREVIOUS = "f8da7fe"        # the previous release: its agents and CLIs speak protocol 1
ROOT = Path(__file__).resolve().parents[2]
# ends when its job dir has a file `go`: a job that runs until the test lets it finish
UNTIL_GO = [PY, "-c", "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.05)",
            "{job_dir}/go"]


@pytest.fixture(scope="module")
def previous_release():
    """The previous release's `luzia` package, from git, in a temp dir for PYTHONPATH."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs this repository's git history (the previous release is taken from it)")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", PREVIOUS, "luzia"],
                             capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"the previous release {PREVIOUS} is not in this clone's history "
                    f"(a shallow clone?): {archive.stderr.decode(errors='replace').strip()}")
    path = Path(tempfile.mkdtemp(prefix="lzprev", dir="/tmp"))
    with tempfile.TemporaryFile() as tar:
        tar.write(archive.stdout)
        tar.seek(0)
        tarfile.open(fileobj=tar).extractall(path, filter="data")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def old_env(previous_release: Path) -> dict[str, str]:
    """The previous release first on the path (PYTHONSAFEPATH: not the current directory,
    which may be this checkout)."""
    return {"PYTHONPATH": str(previous_release), "PYTHONSAFEPATH": "1"}


def agent_status(fleet: LocalFleet, name: str) -> dict:
    """The agent's entry in agents.status ({} while the broker does not list it)."""
    return next((a for a in fleet.control("agents.status") or [] if a["name"] == name), {})


@pytest.mark.tmux
@pytest.mark.timeout(240)
def test_an_old_agent_runs_jobs_and_its_tmux_jobs_survive_its_upgrade(
        short_tmp, tmux_socket, previous_release):
    config = (f'[agent]\nrunner = "tmux"\ntmux_socket = "{tmux_socket}"\n'
              f'command = {json.dumps(UNTIL_GO)}\nslots = 2\n')
    fleet = LocalFleet(short_tmp / "h", config)
    try:
        fleet.start_broker()
        fleet.start_agent("gpu1", env=old_env(previous_release))
        wait_for(lambda: agent_status(fleet, "gpu1").get("state") == "live", 60,
                 message="the previous release's agent joins")
        old = agent_status(fleet, "gpu1")
        assert (old["protocol"], old["version"]) == (1, "")
        # one job at a time: on a loaded box the host is over its cpu ceiling, and the
        # busy-host rule then lets it run one of ours
        first = fleet.submit("demo", "one")
        wait_for(lambda: fleet.state(first) == "running", 60, message="a job runs on the old agent")
        (fleet.home / "jobs" / first / "go").touch()
        wait_for(lambda: fleet.state(first) == "completed", 60, message="the old agent's job done")
        second = fleet.submit("demo", "two")
        wait_for(lambda: fleet.state(second) == "running", 60, message="another one runs there")

        fleet.kill("agent-gpu1", signal.SIGTERM)      # its tmux sessions keep running
        fleet.start_agent("gpu1")                     # this release, same name, same host
        wait_for(lambda: agent_status(fleet, "gpu1").get("protocol") == protocol.PROTOCOL,
                 60, message="the upgraded agent joins")
        assert agent_status(fleet, "gpu1")["version"] == __version__
        assert fleet.state(second) == "running"
        (fleet.home / "jobs" / second / "go").touch()
        wait_for(lambda: fleet.state(second) == "completed", 60,
                 message="the job the old agent started ends under the new one")
        job = fleet.job(second)
        assert job is not None and job["attempt"] == 1      # re-adopted, not run again
        assert "adopted 1" in fleet.output("agent-gpu1")
    finally:
        fleet.close()


@pytest.mark.timeout(180)
def test_a_broker_serving_only_newer_agents_refuses_the_old_one_with_one_clear_line(
        short_tmp, previous_release):
    fleet = LocalFleet(short_tmp / "h", '[agent]\nrunner = "subprocess"\n')
    why = (f"this agent is protocol version 1, the broker {protocol.PROTOCOL} (Luzia "
           f"{__version__}, serving protocol 2 and newer): upgrade the agent")
    try:
        # the key only in the broker's environment: the old release refuses unknown keys in
        # a shared luzia.toml (docs/DEPLOY.md)
        fleet.start("broker", [PY, "-m", "luzia.broker"], env={"LUZIA_BROKER_MIN_PROTOCOL": "2"})
        wait_for(fleet.ping, 15, message="broker answers ping")
        fleet.start_agent("old1", env=old_env(previous_release))
        wait_for(lambda: why in fleet.output("agent-old1"), 60,
                 message="the old agent logs the broker's refusal")
        assert f"broker asked for a new hello: refused: {why}" in fleet.output("agent-old1")
        assert f"agent old1 refused: {why}" in fleet.output("broker")
        status = fleet.cli("agents", "status")
        assert status.returncode == 0, status.stderr
        assert f"agent old1 is refused: {why}" in status.stdout.decode()
        assert agent_status(fleet, "old1").get("health") == "refused"
        # it said Hello again at once; the broker answered once, not in a loop
        assert fleet.output("agent-old1").count("refused:") == 1
        # this release's agent under the same name is welcome
        fleet.kill("agent-old1")
        fleet.start_agent("old1")
        wait_for(lambda: agent_status(fleet, "old1").get("state") == "live", 60,
                 message="the upgraded agent joins")
        joined = agent_status(fleet, "old1")
        assert "outdated" not in joined and joined.get("refused") is None
        # the previous release's CLI is told to upgrade, in a line it prints as it is
        old_cli = subprocess.run([PY, "-m", "luzia.cli", "agents", "status"], capture_output=True,
                                 env={**fleet.env, **old_env(previous_release)}, timeout=60)
        assert old_cli.returncode != 0
        assert "this CLI is protocol version 1, the broker" in old_cli.stderr.decode()
        assert "upgrade the CLI" in old_cli.stderr.decode()
    finally:
        fleet.close()


@pytest.mark.timeout(180)
def test_an_old_cli_submits_and_asks_a_new_broker(short_tmp, previous_release):
    fleet = LocalFleet(short_tmp / "h", '[agent]\nrunner = "subprocess"\n')
    try:
        fleet.start_broker()
        fleet.start_agent("new1")
        env = {**fleet.env, **old_env(previous_release)}
        submitted = subprocess.run([PY, "-m", "luzia.cli", "demo", "from the old CLI"],
                                   capture_output=True, env=env, timeout=60)
        job_id = printed_id(submitted)
        wait_for(lambda: fleet.state(job_id) == "completed", 60, message="its job runs")
        shown = subprocess.run([PY, "-m", "luzia.cli", "jobs", job_id], capture_output=True,
                               env=env, timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert "COMPLETED" in shown.stdout.decode() and job_id in shown.stdout.decode()
    finally:
        fleet.close()
