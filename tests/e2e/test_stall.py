"""Stalled jobs with real processes: the flag, the snapshot, resuming, and kill_on_stall."""

from __future__ import annotations

import json

import pytest

from tests.fleet import PY, fleet_config
from tests.helpers import wait_for

# prints a line, is silent until the test makes the file argv[1], prints again, then is
# silent for good: the silence ends when the test has seen the flag, not after a fixed time
PAUSER = (f'command = ["{PY}", "-c", "import os, sys, time; print(\'first words\', flush=True); '
          f'[time.sleep(0.05) for _ in iter(lambda: os.path.exists(sys.argv[1]), True)]; '
          f'print(\'more words\', flush=True); time.sleep(60)", "{{job_dir}}/go"]')


def stalled(fleet, job_id) -> bool:
    job = fleet.job(job_id)
    return bool(job and job["stalled"])


@pytest.mark.timeout(60)
def test_silent_job_is_flagged_with_a_snapshot_and_the_flag_clears_when_output_resumes(make_fleet):
    fleet = make_fleet(fleet_config(f'runner = "subprocess"\nstall_after = 0.5\n{PAUSER}'))
    fleet.start_broker()
    fleet.start_agent("local")
    job_id = fleet.submit("demo", "speak, pause, speak")
    snapshot = fleet.home / "jobs" / job_id / "stall-snapshot.txt"
    # (a loaded box may start the command so slowly that it is flagged before its first
    # words; the words clear that flag, and the silence after them raises it again)
    wait_for(lambda: stalled(fleet, job_id) and "first words" in snapshot.read_text(), 20,
             message="stalled flag after the first words")
    assert fleet.state(job_id) == "running"
    assert "stalled" in snapshot.read_text().splitlines()[0]
    (fleet.home / "jobs" / job_id / "go").touch()              # it speaks again
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
    job_id = fleet.submit("demo", "speak, then silence", "--max-retries", "1")
    wait_for(lambda: fleet.state(job_id) == "failed", 40, message="failed as stalled")
    job = json.loads(fleet.cli("jobs", job_id, "--json").stdout)
    assert job["reason"] == "stalled" and job["attempt"] == 2
    assert [a["reason"] for a in job["attempts"]] == ["stalled", "stalled"]
    snap = (fleet.home / "jobs" / job_id / "stall-snapshot.txt").read_text()
    assert "tmux pane" in snap.splitlines()[0] and "first words" in snap
