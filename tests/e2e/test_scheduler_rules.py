"""End to end, the scheduler's rules that need real processes: backpressure reported by the
submitting CLI, and preemption stopping a running low job for a critical one."""

from __future__ import annotations

from tests.e2e.test_fleet_of_one import SLEEPER, fleet_config, make_fleet  # noqa: F401 (fixture)
from tests.fleet import jobs_json
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
