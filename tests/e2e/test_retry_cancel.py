"""`luzia retry` and `luzia cancel` against real broker and agent processes."""

from __future__ import annotations

import json

import pytest

from tests.fleet import fleet_config
from tests.helpers import wait_for

# attempt 1 fails (or, for the task "sleep", runs until stopped); later attempts succeed
FLAKY = ('command = ["/bin/sh", "-c", "[ \\"$LUZIA_ATTEMPT\\" -ge 2 ] && exit 0; '
         '[ \\"$0\\" = sleep ] && exec sleep 60; exit 3", "{task}"]\nrunner = "subprocess"')


@pytest.mark.timeout(90)
def test_retry_cancel_and_timeout_with_real_processes(make_fleet):
    fleet = make_fleet(fleet_config(FLAKY, "per_user = false\nmax_per_project = 0"))
    fleet.start_broker()
    fleet.start_agent("local")
    failed = fleet.submit("demo", "fail")
    running = fleet.submit("demo", "sleep")
    timed = fleet.submit("demo", "sleep", "--timeout", "1", "--max-retries", "1")
    wait_for(lambda: fleet.state(failed) == "failed", 20)
    wait_for(lambda: fleet.state(running) == "running", 20)

    out = fleet.cli("retry", failed, running)
    assert out.returncode == 1
    assert out.stdout.decode().splitlines() == [
        f"{failed}: retrying", f"{running}: not retried: it is running; cancel it first to run it again"]
    wait_for(lambda: fleet.state(failed) == "completed", 20)
    job = json.loads(fleet.cli("jobs", failed, "--json").stdout)
    assert job["attempt"] == 2
    assert [(a["attempt"], a["host"], a["exit_code"]) for a in job["attempts"]] == [
        (1, "local", 3), (2, "local", 0)]
    assert all(a["started_at"] and a["finished_at"] for a in job["attempts"])
    detail = fleet.cli("jobs", failed).stdout.decode()
    assert "attempts:" in detail and "#1 local" in detail and "exit 3" in detail

    out = fleet.cli("retry", failed)
    assert out.returncode == 1 and b"not retried: it completed" in out.stdout
    out = fleet.cli("cancel", failed)          # a finished job: said so, and success
    assert out.returncode == 0 and out.stdout.decode() == f"{failed}: already completed\n"
    for command in ("cancel", "retry"):
        out = fleet.cli(command, "999999-aaaaaaaaaaaa")
        assert out.returncode == 2 and b"no job" in out.stderr

    assert fleet.cli("cancel", running).returncode == 0
    wait_for(lambda: fleet.state(running) == "killed", 20)
    out = fleet.cli("retry", running, "--json")
    assert out.returncode == 0
    assert json.loads(out.stdout) == [{"id": running, "state": "pending", "result": "retrying"}]
    wait_for(lambda: fleet.state(running) == "completed", 20)
    assert fleet.job(running)["attempt"] == 2

    # the timeout stopped attempt 1; the automatic retry (after its backoff) completed
    wait_for(lambda: fleet.state(timed) == "completed", 20)
    first, second = fleet.job(timed)["attempts"]
    assert first["reason"] == "timeout" and first["exit_code"] != 0
    assert second["exit_code"] == 0 and second["started_at"] - first["finished_at"] >= 0.9
