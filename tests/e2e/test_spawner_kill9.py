"""kill -9 of an agent whose plain commands its spawner runs (luzia/agents/spawner.py): while
jobs run and as they end, several times over, the agent back each time within the broker's
grace. Every job's exit code reaches the broker, its output is in its output.log, and none
runs twice: what the per-job wrapper promised, kept without it.

Each command waits for a gate file in its job directory, so the test decides which jobs end
while the agent is down, which end just as it is killed, and which it re-adopts running."""

from __future__ import annotations

import random
import signal
from pathlib import Path

import pytest

from luzia import client
from luzia.jobstatus import read_exit_code, read_pid
from tests.fleet import LocalFleet
from tests.helpers import wait_for

JOBS = 30
SLOTS = 6
KILLS = 4
RUNS = "{job_dir}/../../runs.log"     # one line per run of a command: its job id
# the task is the exit code; the command notes its run, prints, waits for its gate, exits
COMMAND = ('["/bin/sh", "-c", '
           '"echo \\"$2\\" >> \\"$3\\"; echo \\"output of $2\\"; '
           'while [ ! -e \\"$4/gate\\" ]; do sleep 0.02; done; exit \\"$1\\"", '
           '"sh", "{task}", "{job_id}", "' + RUNS + '", "{job_dir}"]')


def config() -> str:
    # liveness and grace: an agent down a few seconds is not lost, on a loaded box too
    return ("[broker]\nheartbeat_interval = 0.1\nliveness = 20\nlost_grace = 60\n"
            "[scheduler]\ncpu_ceiling = 1.0\nmemory_ceiling = 1.0\nper_user = false\n"
            f'max_per_project = 0\n[agent]\nslots = {SLOTS}\nrunner = "subprocess"\n'
            f"git_snapshots = false\ncommand = {COMMAND}\n")


class Jobs:
    def __init__(self, jobs_dir: Path, expected: dict[str, int]) -> None:
        self.dir, self.expected = jobs_dir, expected

    def running(self) -> list[str]:
        """The jobs whose command runs now (started, not ended), in id order."""
        return [j for j in sorted(self.expected) if read_pid(self.dir / j)
                and not self.ended(j)]

    def ended(self, job_id: str) -> bool:
        return read_exit_code(self.dir / job_id) is not None

    def all_ended(self, ids: list[str]) -> bool:
        return all(self.ended(j) for j in ids)

    def open(self, ids: list[str]) -> None:
        for job_id in ids:
            (self.dir / job_id / "gate").touch()

    def let_all_end(self, fleet: LocalFleet) -> bool:
        """Open the gates of what runs now; has every job ended, for the broker?"""
        self.open(self.running())
        return all(fleet.state(j) in ("completed", "failed") for j in self.expected)


def agent_pid(fleet: LocalFleet) -> int | None:
    return next((a["pid"] for a in fleet.agents() if a["name"] == "local"
                 and a["state"] == "live"), None)


@pytest.mark.timeout(300)
def test_agent_killed_9_while_jobs_run_and_end_loses_no_exit_code_and_runs_nothing_twice(
        short_tmp, monkeypatch):
    fleet = LocalFleet(short_tmp / "f", config())
    try:
        fleet.start_broker()
        fleet.start_agent("local")
        wait_for(lambda: agent_pid(fleet), 30, message="the agent is live")
        for name, value in fleet.env.items():       # client.submit reads the fleet's config
            monkeypatch.setenv(name, value)
        rng = random.Random(15)
        codes = [rng.choice([0, 0, 1, 3, 42]) for _ in range(JOBS)]
        jobs = Jobs(fleet.home / "jobs",
                    {client.submit("demo", str(code), max_retries=0): code for code in codes})
        readopted_running = 0
        for kill in range(KILLS):
            running = wait_for(lambda: len(jobs.running()) >= 3 and jobs.running(), 60,
                               message="three commands running")
            ending, down, after = running[:1], running[1:2], running[2:]
            jobs.open(ending)                       # ends as the agent dies
            fleet.kill("agent-local", signal.SIGKILL)
            jobs.open(down)                         # ends while no agent watches
            wait_for(lambda: jobs.all_ended(down), 30,   # noqa: B023  (waited for here)
                     message="the spawner records the end of a job while its agent is down")
            fleet.start_agent("local")
            wait_for(lambda: agent_pid(fleet), 30, message=f"the agent is back ({kill + 1})")
            readopted_running += sum(not jobs.ended(j) for j in after)
            jobs.open(after)                        # re-adopted running: they end now
        wait_for(lambda: jobs.let_all_end(fleet), 180, message="every job ended")
        runs = (fleet.home / "runs.log").read_text().split()
        for job_id, code in jobs.expected.items():
            job = fleet.job(job_id)
            assert job["exit_code"] == code, (job_id, job)
            assert job["state"] == ("completed" if code == 0 else "failed"), job
            # an attempt before the last only if its command never ran (the agent killed
            # before it sent the job to its spawner: the broker requeues it); the one run
            # is the last attempt, with its exit code
            assert all(a["exit_code"] in (None, -1) for a in job["attempts"][:-1]), job
            assert runs.count(job_id) == 1, f"{job_id} ran {runs.count(job_id)} times"
            log = (jobs.dir / job_id / "output.log").read_text()
            assert log.count(f"output of {job_id}") == 1, log
            assert read_exit_code(jobs.dir / job_id) == code
        log = fleet.output("agent-local")
        assert "vanished" not in log
        assert log.count("ended with") >= KILLS, "jobs that ended while no agent watched"
        assert readopted_running >= KILLS, "jobs re-adopted while their command still ran"
    finally:
        fleet.close()
