"""Retry on another host: three real agents, each in its own LUZIA_HOME like a host of a
fleet, one of which fails every job; a failed job's retry lands on another agent although
the failing one is the least loaded."""

from __future__ import annotations

from tests.fleet import PLACEMENT_BY_SLOTS, PY, LocalFleet, close_fleet, joined_host
from tests.helpers import wait_for

BROKER = PLACEMENT_BY_SLOTS
SLEEP = [PY, "-c", "import sys, time; time.sleep(float(sys.argv[1]))", "{task}"]


def agent_host(main: LocalFleet, name: str, command: list[str]) -> LocalFleet:
    return joined_host(main, name, command, slots=2)


def test_a_failed_job_is_retried_on_another_agent(short_tmp):
    main = LocalFleet(short_tmp / "main", BROKER)
    hosts: list[LocalFleet] = []
    busy: list[str] = []
    try:
        main.start_broker()
        hosts += [agent_host(main, "good1", SLEEP), agent_host(main, "good2", SLEEP)]
        wait_for(lambda: main.live_agents() == {"good1", "good2"}, 15)
        busy += [main.submit("demo", "60") for _ in range(2)]    # one on each: 1/2 slots used
        wait_for(lambda: {(main.job(i) or {}).get("host") for i in busy} == {"good1", "good2"}, 15)
        hosts.append(agent_host(main, "bad", ["false"]))
        wait_for(lambda: "bad" in main.live_agents(), 15)

        job_id = main.submit("demo", "0", "--max-retries", "2")
        wait_for(lambda: main.state(job_id) == "completed", 20)
        job = main.job(job_id)
        assert job is not None
        attempts = [(a["host"], a["exit_code"]) for a in job["attempts"]]
        # bad was idle, so the first attempt went there; the retry avoided it
        assert attempts == [("bad", 1), ("good1", 0)], attempts
        assert job["retries"] == 1
    finally:
        close_fleet(main, hosts, busy)
