"""End to end: seed 003's fleet on one machine — surtr (reasoning, 2 slots), fenrir (text, 3),
skadi (code, 2) — real broker and agent processes, mixed jobs from several users and projects.

Every rule is checked after the fact from the attempts' assigned/finished times the broker
recorded (a credit is held from assignment to the end), so nothing depends on sampling:
never more on a host than its slots, every job on a host offering its type, per-user and
per-project limits held at every assignment, and no job assigned while a more urgent job of
its type was eligible. Then skadi's heartbeat stops (SIGSTOP): it gets nothing new, code work
waits ("no live agent offers 'code'") until a second code agent, ymir, joins, and goes there
— its lost job too. (Seed 003 has one agent per type, so "goes elsewhere" needs another
agent offering the type; a job never runs on an agent that does not offer its type.)
"""

from __future__ import annotations

import signal
import time

import pytest

from luzia import client, config
from tests.fleet import PY
from tests.helpers import wait_for

AGENTS = {"surtr": (2, "reasoning"), "fenrir": (3, "text"), "skadi": (2, "code")}
OWNERS = {"overbits": "alice", "dss": "bob", "musica": "carol", "librarian": "dave",
          "admin": "erin"}
USER_LIMITS = {"alice": 2}          # everyone else: one running job at a time
PROJECT_CAP = 2
PRIORITIES = ["low", "normal", "high", "critical", "normal", "low", "high", "normal"]
RANK = {"critical": 0, "high": 1, "normal": 2, "low": 3}
# task words the type is detected from (scheduler.type_rules), or None: given with --type
DETECTED = {"code": "fix the bug", "text": "summarize the doc", "reasoning": "analyze the plan"}

# attempt 1 sleeps the task's first number, later attempts its second
COMMAND = (f'command = ["{PY}", "-c", "import os, sys, time; first, later = sys.argv[1].split()[:2]; '
           f'time.sleep(float(first if os.environ[\'LUZIA_ATTEMPT\'] == \'1\' else later))", '
           f'"{{task}}"]')

# liveness 10 x 0.2 s: a stopped agent is seen dead in 2 s, a slow one (a loaded box) is not
CONFIG = f"""
[broker]
heartbeat_interval = 0.2
liveness = 10
lost_grace = 1.0
spool_sweep = 0.2
[scheduler]
cpu_ceiling = 1.0
memory_ceiling = 1.0
max_per_project = {PROJECT_CAP}
per_user_limits = {{ alice = 2 }}
[agent]
runner = "subprocess"
{COMMAND}
""" + "".join(f'[projects.{p}]\nuser = "{u}"\n' for p, u in OWNERS.items())


def mixed_jobs() -> list[dict]:
    """24 jobs: the three types, all four priorities, five projects, six users."""
    jobs = []
    for i in range(24):
        kind = ("code", "text", "reasoning")[i % 3]
        project = list(OWNERS)[(2 * i + i // 5) % 5]
        detect = i % 2 == 0
        jobs.append({
            "project": project, "kind": kind, "priority": PRIORITIES[i % len(PRIORITIES)],
            "user": "frank" if i % 7 == 3 else None,
            "type": None if detect else kind,
            "task": f"{0.3 + 0.1 * (i % 4):.1f} 0.3 " + (DETECTED[kind] if detect else "do it")})
    return jobs


def holding(attempts: list[dict], at: float) -> list[dict]:
    """Attempts holding a credit just before the instant `at`."""
    return [a for a in attempts if a["assigned_at"] < at
            and (a["finished_at"] is None or a["finished_at"] > at)]


def check_rules(jobs: dict[str, dict]) -> None:
    attempts = [dict(a, job=job) for job in jobs.values() for a in job["attempts"]]
    for a in attempts:
        job, at = a["job"], a["assigned_at"]
        slots, offers = AGENTS[a["host"]]
        assert job["type"] == offers, f"{job['id']} ({job['type']}) ran on {a['host']} ({offers})"
        before = holding(attempts, at)
        on_host = [b for b in before if b["host"] == a["host"]]
        assert len(on_host) < slots, f"{a['host']} over its {slots} slots at {at}"
        same_user = [b for b in before if b["job"]["user"] == job["user"]]
        assert len(same_user) < USER_LIMITS.get(job["user"], 1), f"user {job['user']} at {at}"
        same_project = [b for b in before if b["job"]["project"] == job["project"]]
        assert len(same_project) < PROJECT_CAP, f"project {job['project']} at {at}"
        for other in jobs.values():     # a more urgent job of this type was not eligible then
            if (other["type"] == job["type"] and RANK[other["priority"]] < RANK[job["priority"]]
                    and other["attempts"][0]["assigned_at"] > at):
                user_busy = sum(b["job"]["user"] == other["user"] for b in before)
                project_busy = sum(b["job"]["project"] == other["project"] for b in before)
                assert (user_busy >= USER_LIMITS.get(other["user"], 1)
                        or project_busy >= PROJECT_CAP), \
                    (f"{job['id']} ({job['priority']}) started before eligible "
                     f"{other['id']} ({other['priority']})")


@pytest.mark.long
@pytest.mark.timeout(90)
def test_seed003_fleet_keeps_every_rule_and_routes_around_a_silent_agent(make_fleet, short_tmp):
    fleet = make_fleet(CONFIG)
    cfg = config.load(env=fleet.env)
    fleet.start_broker()
    specs = mixed_jobs()
    ids = [client.submit(s["project"], s["task"], cfg=cfg, priority=s["priority"],
                         type=s["type"], user=s["user"]) for s in specs]

    def counts() -> dict[str, int]:
        status = fleet.control("status")
        return status["jobs"] if status else {}
    wait_for(lambda: counts().get("pending") == len(ids), 15, message="all queued")
    for name, (slots, kind) in AGENTS.items():     # separate job dirs, as on separate hosts
        fleet.start_agent(name, "--slots", str(slots), "--capabilities", kind,
                          env={"LUZIA_JOBS_DIR": str(short_tmp / f"jobs-{name}")})
    wait_for(lambda: counts().get("completed") == len(ids), 60, message="all 24 completed")

    jobs = {i: fleet.job(i) for i in ids}
    for spec, job_id in zip(specs, ids, strict=True):
        job = jobs[job_id]
        assert job["type"] == spec["kind"] and job["attempt"] == 1, job
        assert job["user"] == (spec["user"] or OWNERS[spec["project"]])
    check_rules(jobs)

    # skadi's heartbeat stops: nothing new for it, code work waits, then goes to ymir
    stuck = fleet.submit("admin", "6 0.3 fix the build")   # still running when skadi stops
    wait_for(lambda: fleet.state(stuck) == "running", 15)
    assert fleet.job(stuck)["host"] == "skadi"
    skadi = fleet.procs["agent-skadi"]
    skadi.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: "skadi" not in fleet.live_agents(), 15, message="skadi seen dead")
        dead_at = time.time()
        later = [fleet.submit(p, "0.3 0.3 fix the tests") for p in ("overbits", "dss", "musica")]
        text = fleet.submit("librarian", "0.3 0.3 summarize the doc")
        wait_for(lambda: fleet.state(text) == "completed", 20)     # other types carry on
        for job_id in later:
            assert fleet.job(job_id)["why"] == "no live agent offers 'code' (skadi down)"
        wait_for(lambda: fleet.state(stuck) == "pending", 15, message="lost job requeued")
        fleet.start_agent("ymir", "--slots", "2", "--capabilities", "code",
                          env={"LUZIA_JOBS_DIR": str(short_tmp / "jobs-ymir")})
        wait_for(lambda: all(fleet.state(i) == "completed" for i in [stuck, *later]), 30)
        for job_id in later:
            job = fleet.job(job_id)
            assert [a["host"] for a in job["attempts"]] == ["ymir"]
        moved = fleet.job(stuck)
        assert [a["host"] for a in moved["attempts"]] == ["skadi", "ymir"]
        assert moved["attempts"][1]["reason"] == "" and moved["retries"] == 0
        listed = fleet.control("jobs.list", limit=100)
        assert not [j["id"] for j in listed if j["host"] == "skadi" and j["assigned_at"] > dead_at]
    finally:
        skadi.send_signal(signal.SIGCONT)
