"""End to end: real broker and agent processes, real tmux on a private socket, the real CLI."""

from __future__ import annotations

import signal
import subprocess
import textwrap
import uuid
from collections import Counter
from pathlib import Path

import pytest

from tests.fleet import PY, SLEEPER, fleet_config, jobs_json
from tests.helpers import wait_for, wait_for_count


def test_submit_runs_to_completed_in_tmux(make_fleet, tmux_socket):
    fleet = make_fleet(fleet_config(f'runner = "tmux"\ntmux_socket = "{tmux_socket}"'))
    fleet.start_broker()
    fleet.start_agent("local")
    wait_for(lambda: "local" in fleet.live_agents(), 15)
    job_id = fleet.submit("demo", "hello world")
    seen_session = wait_for(lambda: subprocess.run(
        ["tmux", "-L", tmux_socket, "has-session", "-t", f"luzia-{job_id}"]).returncode == 0
        or fleet.state(job_id) == "completed", 15)
    assert seen_session
    wait_for(lambda: fleet.state(job_id) == "completed", 20)
    job = jobs_json(fleet.cli("jobs", job_id, "--json"))
    assert job["state"] == "completed" and job["host"] == "local" and job["project"] == "demo"
    assert job["exit_code"] == 0 and job["priority"] == "normal"
    logs = fleet.cli("logs", job_id)
    assert logs.returncode == 0 and b"hello world" in logs.stdout
    listed = jobs_json(fleet.cli("jobs", "--json"))
    assert [j["id"] for j in listed] == [job_id]


def test_hostile_task_text_reaches_the_command_literally(make_fleet, short_tmp):
    pwned = Path(f"/tmp/pwned-{uuid.uuid4().hex[:8]}")
    task = f'$(touch {pwned}) "quotes" ; newline\n and \x1b[31m `touch {pwned}` \'single\''
    record = (f'command = ["{PY}", "-c", "import sys; open(sys.argv[2], \'w\').write(sys.argv[1])",'
              f' "{{task}}", "{{job_dir}}/seen"]\nrunner = "subprocess"')
    fleet = make_fleet(fleet_config(record))
    fleet.start_broker()
    fleet.start_agent("local")
    job_id = fleet.submit("demo", task)
    wait_for(lambda: fleet.state(job_id) == "completed", 20)
    assert (fleet.home / "jobs" / job_id / "seen").read_text() == task
    assert not pwned.exists()
    assert fleet.job(job_id)["task"] == task


def test_priorities_decide_who_gets_the_only_slot(make_fleet):
    fleet = make_fleet(fleet_config(f'slots = 1\nrunner = "subprocess"\n{SLEEPER}',
                                    "per_user = false\nmax_per_project = 0"))
    fleet.start_broker()
    fleet.start_agent("local")
    wait_for(lambda: "local" in fleet.live_agents(), 15)
    blocker = fleet.submit("demo", "60")
    wait_for(lambda: fleet.state(blocker) == "running", 15)
    order = [("low", "0"), ("low", "0"), ("normal", "0"), ("critical", "0"), ("high", "0")]
    ids = {fleet.submit("demo", task, "--priority", prio): prio for prio, task in order}
    wait_for(lambda: all(fleet.state(i) == "pending" for i in ids), 15)
    assert fleet.cli("cancel", blocker).returncode == 0     # the only slot frees now
    wait_for(lambda: all(fleet.state(i) == "completed" for i in ids), 30)
    assert fleet.state(blocker) == "killed"
    started = sorted(ids, key=lambda i: fleet.job(i)["started_at"])
    assert [ids[i] for i in started] == ["critical", "high", "normal", "low", "low"]


def test_credits_are_never_exceeded(make_fleet):
    fleet = make_fleet(fleet_config(f'slots = 2\nrunner = "subprocess"\n{SLEEPER}',
                                    "per_user = false\nmax_per_project = 0"))
    fleet.start_broker()
    ids = [fleet.submit("demo", "0.3") for _ in range(7)]
    # all seven wait before the agent's two slots exist (one CLI at a time, on a loaded box,
    # may otherwise be slower than a job, and no two would ever compete)
    wait_for(lambda: all(fleet.state(i) == "pending" for i in ids), 15)
    fleet.start_agent("local")
    peak = 0

    def all_done() -> bool:
        nonlocal peak
        agents = fleet.agents()
        peak = max([peak] + [a["running"] for a in agents])
        return all(fleet.state(i) == "completed" for i in ids)
    wait_for(all_done, 40)
    assert peak <= 2            # as sampled; the recorded spans below miss nothing
    spans = sorted((j["started_at"], j["finished_at"]) for j in (fleet.job(i) for i in ids))
    for start, _ in spans:
        overlapping = sum(1 for s, e in spans if s <= start < e)
        assert overlapping <= 2, f"{overlapping} jobs ran at once at {start}"


def test_broker_down_job_is_spooled_and_runs_when_it_is_back(make_fleet):
    fleet = make_fleet(fleet_config('runner = "subprocess"'))
    out = fleet.cli("demo", "run me later")
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.decode().strip().rsplit(":", 1)[1]
    assert b"not reachable" in out.stderr
    assert (fleet.home / "spool" / f"{job_id}.job").exists()
    fleet.start_agent("local")
    fleet.start_broker()
    wait_for(lambda: fleet.state(job_id) == "completed", 20)
    assert not (fleet.home / "spool" / f"{job_id}.job").exists()


def test_killed_agent_gets_no_work_while_dead(make_fleet):
    fleet = make_fleet(fleet_config('slots = 1\nrunner = "subprocess"',
                                    "per_user = false\nmax_per_project = 0"))
    fleet.start_broker()
    fleet.start_agent("a")
    fleet.start_agent("b")
    wait_for(lambda: fleet.live_agents() == {"a", "b"}, 15)
    fleet.kill("agent-a")
    wait_for(lambda: fleet.live_agents() == {"b"}, 15)
    ids = [fleet.submit("demo", f"job {i}") for i in range(3)]
    wait_for(lambda: all(fleet.state(i) == "completed" for i in ids), 30)
    assert {fleet.job(i)["host"] for i in ids} == {"b"}


SUBMITTER = textwrap.dedent("""
    import sys
    from luzia import client
    for i in range(int(sys.argv[1])):
        print(client.submit("demo", f"job {i}"), flush=True)
""")


# 1000 real jobs run at the pace the box allows (a few a second when loaded): a stuck fleet
# fails in a minute (wait_for_count); the timeout only bounds the whole on a slow box
@pytest.mark.long
@pytest.mark.timeout(600)
def test_sigkill_broker_during_1000_submissions_loses_nothing_and_runs_nothing_twice(make_fleet):
    runs = "{job_dir}/../runs.log"
    # no git snapshots: the job dirs are no repositories, and 2000 `git rev-parse` calls
    # only slow the 1000 jobs down
    fleet = make_fleet(fleet_config(
        f'slots = 8\nrunner = "subprocess"\ngit_snapshots = false\n'
        f'command = ["/bin/sh", "-c", "echo $LUZIA_JOB_ID >> {runs}"]',
        "per_user = false\nmax_per_project = 0"), LUZIA_MAX_JOBS="5000")
    fleet.start_broker()
    fleet.start_agent("local")
    writers = [subprocess.Popen([PY, "-c", SUBMITTER, "250"], env=fleet.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
    printed: list[str] = []
    # kill the broker once some ids are out, while the writers keep going
    ids_out = writers[0].stdout
    assert ids_out is not None
    first = ids_out.readline().decode().strip()
    printed.append(first)
    for _ in range(60):
        printed.append(ids_out.readline().decode().strip())
    fleet.kill("broker", signal.SIGKILL)
    for w in writers:
        # through the same buffered file readline() used: communicate() reads the raw pipe
        # and would miss what readline() had buffered beyond the lines it returned
        out, err = w.stdout.read(), w.stderr.read()  # type: ignore[union-attr]
        assert w.wait(timeout=120) == 0, err.decode()
        printed += out.decode().split()
    printed = [p for p in printed if p]
    assert len(printed) == 1000 and len(set(printed)) == 1000
    fleet.start_broker()

    def completed() -> int:
        status = fleet.control("status")     # counts only: cheap enough to poll
        return status["jobs"].get("completed", 0) if status else -1
    def stuck() -> str:
        jobs = fleet.control("jobs.list", limit=2000) or []
        return str([(j["id"], j["state"], j["reason"], j["attempt"]) for j in jobs
                    if j["state"] != "completed"][:10])
    try:
        wait_for_count(completed, 1000, message="all 1000 jobs completed")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; not completed: {stuck()}\nbroker log tail: "
                             f"{fleet.output('broker')[-3000:]}") from None
    jobs = {j["id"]: j for j in fleet.control("jobs.list", limit=2000)}
    assert set(jobs) == set(printed)
    ran = (fleet.home / "jobs" / "runs.log").read_text().split()
    twice = sorted(i for i, n in Counter(ran).items() if n > 1)
    assert sorted(ran) == sorted(printed), f"ran twice: {twice[:5]}\n" + \
        "\n".join(line for name in ("broker", "agent-local") for line in fleet.output(name).splitlines()
                  if any(i in line for i in twice[:3]) or "heartbeat" in line or "lost" in line)[-4000:]
