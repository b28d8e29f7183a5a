"""End to end, the scheduler's rules that need real processes: backpressure reported by the
submitting CLI, and preemption stopping a running low job for a critical one."""

from __future__ import annotations

from tests.fleet import PY, fleet_config, jobs_json
from tests.helpers import wait_for


def test_a_full_queue_rejects_and_the_cli_says_so(make_fleet):
    fleet = make_fleet(fleet_config(scheduler="per_user = false"), LUZIA_MAX_PENDING="2")
    fleet.start_broker()                                   # no agent: everything stays pending
    kept = [fleet.submit("demo", f"job {i}") for i in range(2)]
    wait_for(lambda: all(fleet.state(i) == "pending" for i in kept), 15)
    out = fleet.cli("demo", "one too many")
    assert out.returncode == 75, out.stderr
    job_id = out.stdout.decode().strip().rsplit(":", 1)[1]     # the id is still printed
    assert f"job {job_id} rejected: queue full (2 pending, max_pending=2)" in out.stderr.decode()
    listed = {j["id"]: j for j in jobs_json(fleet.cli("jobs", "--json"))}
    assert listed[job_id]["state"] == "rejected" and "queue full" in listed[job_id]["reason"]
    assert "queue full" in fleet.cli("jobs").stdout.decode()
    assert fleet.cli("cancel", kept[0]).returncode == 0         # room again: accepted
    wait_for(lambda: not (fleet.home / "run" / "queue-full").exists(), 10)
    fleet.submit("demo", "fits now")
    assert fleet.cli("cancel", kept[1]).returncode == 0
    out = fleet.cli("demo", "after nothing", "--after", "000000-000000000000")
    assert out.returncode == 75 and b"unknown dependency 000000-000000000000" in out.stderr


# attempt 1 sleeps the first number of the task, later attempts the second
TWO_SPEEDS = (f'command = ["{PY}", "-c", "import os, sys, time; first, later = sys.argv[1].split(); '
              f'time.sleep(float(first if os.environ[\'LUZIA_ATTEMPT\'] == \'1\' else later))", '
              f'"{{task}}"]')


def test_preemption_stops_the_low_job_and_requeues_it_as_a_new_attempt(make_fleet):
    fleet = make_fleet(fleet_config(f'slots = 1\nrunner = "subprocess"\nkill_grace = 1.0\n{TWO_SPEEDS}',
                                    "per_user = false\npreempt = true\npreempt_after = 0.5"))
    fleet.start_broker()
    fleet.start_agent("solo")
    low = fleet.submit("demo", "60 0.2", "--priority", "low")
    wait_for(lambda: fleet.state(low) == "running", 15)
    critical = fleet.submit("demo", "0.2 0.2", "--priority", "critical")
    wait_for(lambda: fleet.state(critical) == "completed", 20, message="critical ran")
    wait_for(lambda: fleet.state(low) == "completed", 20, message="low ran again")
    low_job, crit_job = fleet.job(low), fleet.job(critical)
    assert low_job["attempt"] == 2 and low_job["retries"] == 0 and low_job["exit_code"] == 0
    first, second = low_job["attempts"]
    assert first["reason"] == f"preempted by {critical}" and first["host"] == "solo"
    assert first["finished_at"] <= crit_job["started_at"] <= crit_job["finished_at"] <= second["started_at"]
    assert crit_job["attempt"] == 1
