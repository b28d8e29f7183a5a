"""Stalled jobs with real processes: the flag, the snapshot, resuming, and kill_on_stall."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_fleet_of_one import fleet_config, make_fleet  # noqa: F401  (fixture)
from tests.fleet import PY
from tests.helpers import wait_for

# prints a line, is silent for argv[1] seconds, prints again, then is silent for good
PAUSER = (f'command = ["{PY}", "-c", "import sys, time; print(\'first words\', flush=True); '
          f'time.sleep(float(sys.argv[1])); print(\'more words\', flush=True); time.sleep(60)", '
          f'"{{task}}"]')


def stalled(fleet, job_id) -> bool:
    job = fleet.job(job_id)
    return bool(job and job["stalled"])


@pytest.mark.timeout(60)
def test_silent_job_is_flagged_with_a_snapshot_and_the_flag_clears_when_output_resumes(make_fleet):
    fleet = make_fleet(fleet_config(f'runner = "subprocess"\nstall_after = 0.5\n{PAUSER}'))
    fleet.start_broker()
    fleet.start_agent("local")
    job_id = fleet.submit("demo", "2.5")
    wait_for(lambda: stalled(fleet, job_id), 20, message="stalled flag")
    assert fleet.state(job_id) == "running"
    snap = (fleet.home / "jobs" / job_id / "stall-snapshot.txt").read_text()
    assert "stalled" in snap.splitlines()[0] and "first words" in snap
    wait_for(lambda: not stalled(fleet, job_id), 20, message="flag cleared by new output")
    assert fleet.state(job_id) == "running"
    assert fleet.job(job_id)["stalled_since"] is None
    wait_for(lambda: stalled(fleet, job_id), 20, message="stalled again, for good")
    assert "running (stalled" in fleet.cli("jobs").stdout.decode()
    assert "stalled    no output for" in fleet.cli("jobs", job_id).stdout.decode()
    assert fleet.cli("cancel", job_id).returncode == 0
    wait_for(lambda: fleet.state(job_id) == "killed", 20)


@pytest.mark.timeout(60)
def test_kill_on_stall_fails_the_job_as_stalled_and_retries_apply_in_tmux(make_fleet, tmux_socket):
    fleet = make_fleet(fleet_config(
        f'runner = "tmux"\ntmux_socket = "{tmux_socket}"\nkill_on_stall = true\nkill_grace = 1.0\n'
        f'{PAUSER}') + "\n[projects.demo]\nstall_after = 0.5\n")
    fleet.start_broker()
    fleet.start_agent("local")
    job_id = fleet.submit("demo", "600", "--max-retries", "1")
    wait_for(lambda: fleet.state(job_id) == "failed", 40, message="failed as stalled")
    job = json.loads(fleet.cli("jobs", job_id, "--json").stdout)
    assert job["reason"] == "stalled" and job["attempt"] == 2
    assert [a["reason"] for a in job["attempts"]] == ["stalled", "stalled"]
    snap = (fleet.home / "jobs" / job_id / "stall-snapshot.txt").read_text()
    assert "tmux pane" in snap.splitlines()[0] and "first words" in snap
