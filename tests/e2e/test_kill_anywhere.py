"""kill -9 anywhere: an agent in the middle of a stream of jobs (back within the grace, or
never), and the CLI in the middle of submitting. Every printed id reaches the broker and
exactly one terminal state; a job runs twice only when an agent's loss makes it
unavoidable, and then its attempts say so."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import Counter

import pytest

from luzia import protocol
from tests.e2e.test_fleet_of_one import SUBMITTER
from tests.fleet import PY, LocalFleet
from tests.helpers import wait_for

RUNS = "{job_dir}/../../runs.log"    # one line per run: id, attempt, the agent's jobs dir
STREAM = 16


def config(lost_grace: float) -> str:
    # liveness: a live agent on a loaded box may miss a few beats without being taken for lost
    return (f"[broker]\nheartbeat_interval = 0.1\nliveness = 10\nlost_grace = {lost_grace}\n"
            "spool_sweep = 0.2\n"
            "[scheduler]\ncpu_ceiling = 1.0\nmemory_ceiling = 1.0\nper_user = false\n"
            'max_per_project = 0\n[agent]\nslots = 2\nrunner = "subprocess"\n'
            f'command = ["/bin/sh", "-c", "echo $LUZIA_JOB_ID $LUZIA_ATTEMPT $LUZIA_JOB_DIR'
            f' >> {RUNS}; sleep 0.5"]\n')


def start_agent(fleet: LocalFleet, name: str) -> None:
    """Each agent its own jobs directory, as on its own host."""
    fleet.env["LUZIA_JOBS_DIR"] = str(fleet.home / f"jobs-{name}")
    try:
        fleet.start_agent(name)
    finally:
        del fleet.env["LUZIA_JOBS_DIR"]


def stream_with_agent_killed(fleet: LocalFleet) -> list[str]:
    """Start a and b, submit a stream of jobs, SIGKILL a while it runs some; the printed ids."""
    fleet.start_broker()
    start_agent(fleet, "a")
    start_agent(fleet, "b")
    wait_for(lambda: fleet.live_agents() == {"a", "b"}, 20)
    writer = subprocess.Popen([PY, "-c", SUBMITTER, str(STREAM)], env=fleet.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # running, not only assigned: on a loaded box an Assign may still be on its way when a dies
    wait_for(lambda: any(j["host"] == "a" for j in fleet.control("jobs.list", state=["running"]) or []),
             20, message="agent a runs something")
    fleet.kill("agent-a", signal.SIGKILL)
    out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err.decode()
    return out.decode().split()


def settle(fleet: LocalFleet, printed: list[str]) -> tuple[dict, Counter]:
    """Wait until every printed id completed; the jobs and how often each ran."""
    assert len(printed) == STREAM
    try:
        wait_for(lambda: (fleet.control("status") or {}).get("jobs", {}).get("completed") == STREAM,
                 60, message="every job completed")
    except AssertionError:
        left = [(j["id"], j["state"], j["host"], j["attempt"], j["reason"])
                for j in fleet.control("jobs.list", limit=100) or [] if j["state"] != "completed"]
        logs = "\n".join(fleet.output(n)[-1500:] for n in ("broker", "agent-a", "agent-b")
                         if (fleet.home / f"{n}.out").exists())
        raise AssertionError(f"not completed: {left}\n{logs}") from None
    jobs = {i: fleet.job(i) for i in printed}
    assert {j["state"] for j in jobs.values()} == {"completed"}
    runs = Counter(line.split()[0] for line in (fleet.home / "runs.log").read_text().splitlines())
    assert set(runs) == set(printed)
    return jobs, runs


@pytest.mark.timeout(120)
def test_agent_killed_and_back_within_the_grace_keeps_its_jobs_and_runs_nothing_twice(make_fleet):
    fleet = make_fleet(config(lost_grace=30))
    printed = stream_with_agent_killed(fleet)
    wait_for(lambda: fleet.control("jobs.list", state=["lost"]), 20, message="a's jobs are lost")
    start_agent(fleet, "a")                       # back, with its job directories
    jobs, runs = settle(fleet, printed)
    assert max(runs.values()) == 1, f"ran twice: {[i for i, n in runs.items() if n > 1]}"
    readopted = [j for j in jobs.values() if j["host"] == "a" and j["attempt"] == 1]
    assert readopted, "some of a's jobs finished under their first attempt after it came back"


@pytest.mark.timeout(120)
def test_agent_killed_for_good_its_jobs_run_again_elsewhere_as_counted_attempts(make_fleet):
    fleet = make_fleet(config(lost_grace=1))
    printed = stream_with_agent_killed(fleet)
    jobs, runs = settle(fleet, printed)
    twice = {i for i, n in runs.items() if n > 1}
    assert max(runs.values()) <= 2
    for job_id in twice:                          # only the lost agent's runs were repeated
        attempts = jobs[job_id]["attempts"]
        assert jobs[job_id]["attempt"] >= 2 and jobs[job_id]["host"] == "b"
        assert any(a["host"] == "a" and "lost" in a["reason"] for a in attempts), attempts
    assert all(j["host"] == "b" for j in jobs.values() if j["attempt"] > 1)


@pytest.mark.timeout(90)
def test_cli_killed_mid_submit_loses_no_printed_id_and_leaves_nothing_that_breaks(make_fleet):
    fleet = make_fleet(config(lost_grace=1))
    fleet.start_broker()
    spool = fleet.home / "spool"
    good = protocol.spool_bytes(protocol.Submit(job=protocol.JobSpec(
        id="010203-0123456789ab", project="demo", task="planted", user="x")))
    (spool / "010203-0123456789ab.job").write_bytes(good)
    (spool / "010204-0123456789ab.job").write_bytes(good[:len(good) // 2])   # half a file
    began = time.monotonic()
    printed = [fleet.submit("demo", "one whole submission, to time it")]
    whole = time.monotonic() - began
    rng = random.Random(5)
    killed = 0
    for group in range(6):              # 4 at once, each killed at a random point of its life
        clis = [subprocess.Popen([PY, "-m", "luzia.cli", "demo", f"kill me {group}.{n}"],
                                 env=fleet.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
                for n in range(4)]
        start = time.monotonic()
        for cli, at in zip(clis, sorted(rng.uniform(0, 3 * whole) for _ in clis), strict=True):
            time.sleep(max(0.0, start + at - time.monotonic()))   # the random kill point
            cli.kill()
        for cli in clis:
            out, _ = cli.communicate(timeout=30)
            killed += cli.returncode == -signal.SIGKILL
            printed += [w.rsplit(":", 1)[1] for w in out.decode().split() if w.startswith("agent:")]
    printed.append(fleet.submit("demo", "after the kills"))
    wait_for(lambda: all(fleet.state(i) == "pending" for i in printed), 20,
             message="every printed id reached the broker")
    wait_for(lambda: not list(spool.glob("*.job")), 20, message="the spool swept clean")
    assert fleet.state("010203-0123456789ab") == "pending"
    assert [p.name.split(".job")[0] for p in (spool / "bad").iterdir()] == ["010204-0123456789ab"]
    assert "bad spool file 010204-0123456789ab.job moved to" in fleet.output("broker")
    assert fleet.procs["broker"].poll() is None
    print(f"{killed} of 24 CLIs killed, {len(printed) - 2} ids printed by the 24; "
          f"{len(list(spool.glob('.*.tmp')))} half-written temp files left, ignored")
