"""Workspaces end to end (issue 12, docs/WORKSPACES.md): real broker and agent processes, real
git repositories, the real CLI.

Two jobs of one project edit the same file at the same time, each on its own branch, the
user's checkout untouched; the first merges, the second is refused naming the file and
changes nothing. A second agent with its own state directory (another host, simulated)
works on a file:// URL repo: its branch is pushed home and `luzia diff` shows it. A job
lost with its agent is retried on another from the same base commit. A project without a
repo runs one job at a time in its workdir, unless it says it may share it.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from luzia.agents.jobdir import JobDir
from tests.fleet import PY, LocalFleet, fleet_config, jobs_json
from tests.gitrepo import commit_all, git, job_branches, make_repo, user_state, worktrees
from tests.helpers import wait_for

# the job: line 2 of notes.txt becomes the task's first word, once every job sharing the
# barrier directory has started (so they provably run at the same time)
EDITOR = """
import os, pathlib, sys, time
line, barrier, wanted = (sys.argv[1].split() + ["", "1"])[:3]
if barrier:
    b = pathlib.Path(barrier)
    (b / os.environ["LUZIA_JOB_ID"]).touch()
    deadline = time.time() + 120
    while len(list(b.iterdir())) < int(wanted) and time.time() < deadline:
        time.sleep(0.05)
    print("together" if len(list(b.iterdir())) >= int(wanted) else "alone", flush=True)
if os.environ.get("WS_HOLD"):
    print("holding", flush=True)
    time.sleep(600)
p = pathlib.Path("notes.txt")
lines = p.read_text().splitlines()
lines[1] = line
p.write_text("\\n".join(lines) + "\\n")
print("edited", flush=True)
"""


def config(projects: str, agent: str = "", scheduler: str = "per_user = false",
           broker: str = "") -> str:
    command = json.dumps([PY, "-c", EDITOR, "{task}"])
    return (fleet_config(f'runner = "subprocess"\ncommand = {command}\n{agent}', scheduler, broker)
            + f"\n{projects}\n[projects.demo]\n")


def project(name: str, repo: str, extra: str = "") -> str:
    return f"[projects.{name}]\nrepo = {json.dumps(repo)}\n{extra}\n"


def far_agent(fleet: LocalFleet, name: str, home: Path, **env: str):
    """An agent with a state directory of its own, as on another host."""
    return fleet.start_agent(name, env={"LUZIA_HOME": str(home), **env,
                                        "LUZIA_ENDPOINTS_AGENTS": f"ipc://{fleet.home}/run/agents"})


def ended(fleet: LocalFleet, *ids: str, timeout: float = 45) -> list[dict[str, Any]]:
    """The jobs once all have ended (within the test's own 60 s timeout, so a job that
    never ends fails here, with the jobs' logs, not as a bare timeout)."""
    try:
        wait_for(lambda: all(fleet.state(i) in ("completed", "failed", "killed") for i in ids),
                 timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{logs(fleet, *ids)}") from None
    return [fleet.job(i) or {} for i in ids]      # {}: not found (KeyError at its use)


def logs(fleet: LocalFleet, *ids: str) -> str:
    """The jobs' states and output, and the agent's log: what a failed assertion shows."""
    parts = [f"--- {i} ({fleet.state(i)}):\n{fleet.cli('logs', i).stdout.decode(errors='replace')}"
             for i in ids]
    return "\n".join(parts + [f"--- agent log:\n{fleet.output('agent-local')[-4000:]}"])


def test_two_jobs_at_once_each_on_its_branch_then_merge_and_a_refused_conflict(make_fleet,
                                                                               short_tmp):
    repo = make_repo(short_tmp / "repo")
    barrier = short_tmp / "barrier"
    barrier.mkdir()
    fleet = make_fleet(config(project("app", str(repo))))
    fleet.start_broker()
    fleet.start_agent("local")
    before = user_state(repo)
    a = fleet.submit("app", f"ALPHA {barrier} 2")
    b = fleet.submit("app", f"BETA {barrier} 2")
    jobs = ended(fleet, a, b)
    assert [j["state"] for j in jobs] == ["completed", "completed"], jobs
    for job_id in (a, b):
        assert b"together" in fleet.cli("logs", job_id).stdout       # they ran at once
    assert user_state(repo) == before                                # the user's work: untouched
    assert sorted(job_branches(repo)) == sorted([f"luzia/{a}", f"luzia/{b}"])
    diff_a = fleet.cli("diff", a).stdout.decode()
    assert "+ALPHA" in diff_a and "BETA" not in diff_a and "notes.txt" in diff_a
    assert "+BETA" in git(repo, "diff", "main", f"luzia/{b}"), logs(fleet, a, b)
    detail = fleet.cli("jobs", a).stdout.decode()
    assert f"branch     luzia/{a}  (1 files, +1 −1; not merged)" in detail

    refused = fleet.cli("merge", a)
    err = refused.stderr.decode().strip()
    assert refused.returncode == 1 and "uncommitted changes" in err and "user.txt" in err
    assert len(err.splitlines()) == 1 and user_state(repo) == before

    commit_all(repo, "the user's own work")
    assert fleet.cli("merge", a, "--dry-run").returncode == 0
    merged = fleet.cli("merge", a)
    assert merged.returncode == 0, merged.stderr
    assert (repo / "notes.txt").read_text().splitlines()[1] == "ALPHA"
    assert fleet.job(a)["outcome"] == "merged"

    after_first = user_state(repo)
    second = fleet.cli("merge", b)
    err = second.stderr.decode().strip()
    assert second.returncode == 1 and "conflicts with main in notes.txt" in err, err
    assert "nothing was changed" in err and len(err.splitlines()) == 1
    assert user_state(repo) == after_first and not git(repo, "status", "--porcelain",
                                                       "--untracked-files=no")
    assert fleet.job(b)["outcome"] == ""
    again = fleet.cli("merge", a, "--json")
    assert again.returncode == 0 and jobs_json(again)["already"] is True


def test_a_second_agent_of_its_own_pushes_a_url_repos_branch_home(make_fleet, short_tmp):
    origin = make_repo(short_tmp / "origin", dirty=False)
    far = short_tmp / "far"
    fleet = make_fleet(config(project("app", f"file://{origin}")),
                       XDG_CACHE_HOME=str(short_tmp / "cache"))
    fleet.start_broker()
    far_agent(fleet, "far", far)
    job_id = fleet.submit("app", "REMOTE")
    job = ended(fleet, job_id)[0]
    assert job["state"] == "completed" and job["host"] == "far" and job["push"] == "pushed"
    assert job["workspace"].startswith(str(far / "workspaces" / "app"))
    tip = git(origin, "rev-parse", f"luzia/{job_id}").strip()
    assert tip == job["head_commit"] and worktrees(origin) == [str(origin)]
    assert (far / "workspaces" / "app" / "mirror.git").is_dir()
    assert not (fleet.home / "workspaces").exists()         # the broker's host made none
    out = fleet.cli("diff", job_id)
    assert out.returncode == 0, out.stderr
    assert "+REMOTE" in out.stdout.decode()
    where = jobs_json(fleet.cli("workspace", job_id, "--json"))
    assert (where["host"], where["branch"], where["here"]) == ("far", f"luzia/{job_id}", True)
    detail = fleet.cli("jobs", job_id).stdout.decode()
    assert "push       pushed" in detail and f"far:{job['workspace']}" in detail


def test_a_job_lost_with_its_agent_is_retried_elsewhere_from_the_same_base(make_fleet,
                                                                          short_tmp):
    origin = make_repo(short_tmp / "origin", dirty=False)
    # its jobs wait 1 s for the lost agent, not the default 30 s
    fleet = make_fleet(config(project("app", f"file://{origin}"), broker="lost_grace = 1"))
    fleet.start_broker()
    first_home, second_home = short_tmp / "one", short_tmp / "two"
    far_agent(fleet, "one", first_home, WS_HOLD="1")
    job_id = fleet.submit("app", "RETRIED")
    base = wait_for(lambda: (fleet.job(job_id) or {}).get("base_commit"), 60)
    assert base == git(origin, "rev-parse", "main").strip()
    (origin / "later.txt").write_text("main moved on\n")
    moved = commit_all(origin, "later work on main")
    # the host is lost: its agent and the job's processes die with it
    log = first_home / "jobs" / job_id / "output.log"
    # the command may say so before its wrapper has written the pid file
    jd = JobDir(first_home / "jobs", job_id)
    wait_for(lambda: "holding" in log.read_text() and jd.pid(), 60)
    fleet.kill("agent-one")
    for pid in (jd.status().wrapper_pid, jd.pid()):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    far_agent(fleet, "two", second_home)
    job = ended(fleet, job_id)[0]
    assert job["state"] == "completed" and job["host"] == "two" and job["base_commit"] == base
    attempts = job["attempts"]
    assert [(a["host"], a["base_commit"]) for a in attempts] == [("one", base), ("two", base)]
    assert git(origin, "rev-parse", f"luzia/{job_id}^").strip() == base != moved
    detail = fleet.cli("jobs", job_id).stdout.decode()
    assert f"base {base[:10]}" in detail.split("attempts:")[1]


def test_a_project_without_repo_runs_one_job_at_a_time_in_its_workdir(make_fleet, short_tmp):
    shared, together = short_tmp / "shared", short_tmp / "together"
    shared.mkdir()
    together.mkdir()
    for d in (shared, together):
        (d / "notes.txt").write_text("one\ntwo\n")
    barrier = short_tmp / "barriers"
    barrier.mkdir()
    fleet = make_fleet(config(f'[projects.shared]\nworkdir = "{shared}"\n'
                              f'[projects.together]\nworkdir = "{together}"\nshared_concurrent = true\n',
                              agent="slots = 4"))
    fleet.start_broker()
    fleet.start_agent("local")
    (barrier / "hold").mkdir()
    first = fleet.submit("shared", f"FIRST {barrier}/hold 2")      # waits for the test
    wait_for(lambda: fleet.state(first) == "running", 60)
    second = fleet.submit("shared", "SECOND")
    why = wait_for(lambda: "in use" in ((fleet.job(second) or {}).get("why") or ""), 30)
    assert fleet.job(second)["state"] == "pending"
    assert f"workdir {shared} in use by {first}" in fleet.job(second)["why"], why
    (barrier / "hold" / "go").touch()
    (barrier / "both").mkdir()
    c = fleet.submit("together", f"C {barrier}/both 2")
    d = fleet.submit("together", f"D {barrier}/both 2")
    jobs = ended(fleet, first, second, c, d)
    assert all(j["state"] == "completed" for j in jobs), jobs
    one, two = jobs[0], jobs[1]
    assert two["started_at"] >= one["finished_at"]          # never both at once
    for job_id in (c, d):
        assert b"together" in fleet.cli("logs", job_id).stdout


@pytest.fixture(autouse=True)
def _no_user_git_config(monkeypatch, short_tmp):
    """The jobs' git must not depend on the tester's ~/.gitconfig."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(short_tmp / "gitconfig"))
