"""Agent-aware jobs end to end (issue 13, docs/AGENTS.md): a real broker and real agents,
each in its own LUZIA_HOME like a host, run tests/agents/fake_claude.py, which prints Claude
Code's stream-json (a session id, a line that is not JSON, cost and tokens, and on demand a
usage limit whose reset is a few seconds ahead); one project has a real git repo, so its
jobs run in workspaces (docs/WORKSPACES.md) through the same adapter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fleet import PLACEMENT_BY_SLOTS, PY, LocalFleet, close_fleet, fleet_config, joined_host
from tests.gitrepo import git, make_repo, user_state
from tests.helpers import wait_for

FAKE = str(Path(__file__).resolve().parents[1] / "agents" / "fake_claude.py")
COMMAND = [PY, FAKE, "-p", "{task}", "--output-format", "stream-json", "--verbose"]
RESUME = [PY, FAKE, "--resume", "{session_id}", "-p", "continue"]
BROKER = PLACEMENT_BY_SLOTS + """
lost_grace = 600
[projects.spend]
user = "bob"
[projects.work]
user = "carol"
[budgets.users.bob]
day = 0.20
"""


def agent_host(main: LocalFleet, name: str, account: str) -> LocalFleet:
    """An agent in a home of its own (a host), with one account whose env names it."""
    return joined_host(main, name, COMMAND, extra=f"""format = "claude"
resume_argv = {json.dumps(RESUME)}
[accounts.{account}]
env = {{ FAKE_ACCOUNT = "{account}" }}""")


def job_of(main: LocalFleet, job_id: str) -> dict[str, Any]:
    """The broker's job object (it answers: the job is known)."""
    job = main.job(job_id)
    assert job is not None, job_id
    return job


def log_of(main: LocalFleet, job_id: str) -> str:
    out = main.cli("logs", job_id)
    assert out.returncode == 0, out.stderr
    return out.stdout.decode()


@pytest.mark.long
def test_cost_budget_usage_limit_and_resume(short_tmp):
    main = LocalFleet(short_tmp / "main", BROKER)
    hosts: list[LocalFleet] = []
    busy: list[str] = []
    try:
        main.start_broker()
        hosts.append(agent_host(main, "a1", "team-a"))
        wait_for(lambda: main.live_agents() == {"a1"}, 20)

        # cost and tokens, recorded from the result object and summed
        first = main.submit("spend", "cost=0.25")
        wait_for(lambda: main.state(first) == "completed", 30)
        job = job_of(main, first)
        assert job["cost_usd"] == 0.25 and job["tokens_in"] == 100 and job["tokens_out"] == 40
        assert (job["cache_read"], job["cache_write"], job["turns"]) == (1000, 200, 2)
        assert job["model"] == "claude-fake-1" and job["session_id"] == f"sess-{first}"
        assert job["account"] == "team-a"
        assert job["attempts"][0]["cost_usd"] == 0.25
        text = log_of(main, first)      # readable: the assistant's text and its tool call
        assert "working on cost=0.25 as team-a" in text and "→ Bash: ls -la" in text
        assert '"type"' not in text.replace("this line is not json {", "")
        raw = hosts[0].home / "jobs" / first / "output.jsonl"
        assert '"total_cost_usd": 0.25' in raw.read_text()
        stats = main.control("stats")
        assert stats["total"]["cost_usd"] == 0.25 and stats["by_user"][0]["tokens_in"] == 100
        assert stats["by_agent"][0]["name"] == "a1" and stats["by_agent"][0]["cost_usd"] == 0.25

        # bob spent $0.25 of his $0.20 a day: his next job waits, with the reason
        second = main.submit("spend", "cost=0.01")
        wait_for(lambda: "budget" in (main.job(second) or {}).get("why", ""), 15)
        why = job_of(main, second)["why"]
        assert why == "budget: user bob spent $0.25 of $0.20 today; resets 00:00 UTC", why
        budget = main.control("budget")
        assert budget["budgets"][0]["over"] and budget["budgets"][0]["spent"] == 0.25
        main.cli("cancel", second)

        # a usage limit pauses the job and marks account team-a limited fleet-wide
        hosts.append(agent_host(main, "b1", "team-b"))
        wait_for(lambda: main.live_agents() == {"a1", "b1"}, 20)
        limited = main.submit("work", "limit=8")         # both idle: a1 first by name
        wait_for(lambda: main.state(limited) == "paused", 30)
        job = job_of(main, limited)
        assert job["host"] == "" and job["pauses"] == 1 and "usage limit" in job["reason"]
        assert [a["account"] for a in main.control("budget")["accounts"]] == ["team-a"]
        # another account's agent takes the next job
        other = main.submit("work", "sleep=60")
        busy.append(other)
        wait_for(lambda: main.state(other) == "running", 20)
        assert job_of(main, other)["host"] == "b1"
        # at the reset the paused job goes on where it stopped: --resume <its session>
        wait_for(lambda: main.state(limited) == "completed", 40)
        job = job_of(main, limited)
        assert len(job["attempts"]) == 2 and job["attempts"][1]["host"] == "a1"
        meta = json.loads((hosts[0].home / "jobs" / limited / "meta.json").read_text())
        assert meta["argv"][2:4] == ["--resume", f"sess-{limited}"], meta["argv"]
        assert f"resumed session sess-{limited}" in log_of(main, limited)
    finally:
        close_fleet(main, hosts, busy)


def test_a_job_retried_after_its_agent_was_killed_resumes_its_session(short_tmp):
    main = LocalFleet(short_tmp / "main", BROKER)
    host: LocalFleet | None = None
    try:
        main.start_broker()
        host = agent_host(main, "a1", "team-a")
        wait_for(lambda: main.live_agents() == {"a1"}, 20)
        job_id = main.submit("work", "sleep=120")
        wait_for(lambda: (main.job(job_id) or {}).get("session_id") == f"sess-{job_id}", 30)
        host.kill("agent-a1")                       # kill -9: its job's wrapper runs on
        wait_for(lambda: main.state(job_id) == "lost", 20)
        out = main.cli("retry", job_id)
        assert out.returncode == 0 and b"retrying" in out.stdout, out.stderr
        assert job_of(main, job_id)["resume"] == f"sess-{job_id}"
        host.start_agent("a1")      # back: it drops the old attempt, runs the new one
        wait_for(lambda: main.state(job_id) == "completed", 60)
        meta = json.loads((host.home / "jobs" / job_id / "meta.json").read_text())
        assert meta["argv"][2:4] == ["--resume", f"sess-{job_id}"], meta["argv"]
        assert f"resumed session sess-{job_id}" in log_of(main, job_id)
    finally:
        for fleet in (host, main):
            if fleet is not None:
                fleet.close()


def test_a_workspace_job_through_the_claude_adapter_commits_and_resumes_on_its_branch(
        make_fleet, short_tmp):
    repo = make_repo(short_tmp / "repo")
    before = user_state(repo)
    fleet = make_fleet(fleet_config(
        f'runner = "subprocess"\ncommand = {json.dumps(COMMAND)}\nformat = "claude"\n'
        f'resume_argv = {json.dumps(RESUME)}') + f"\n[projects.app]\nrepo = {json.dumps(str(repo))}\n")
    fleet.start_broker()
    fleet.start_agent("local")
    wait_for(lambda: fleet.live_agents() == {"local"}, 20)

    # its own worktree, cost and tokens from the stream, one commit on its branch
    first = fleet.submit("app", "write=a.txt cost=0.30")
    wait_for(lambda: fleet.state(first) == "completed", 60)
    job = job_of(fleet, first)
    assert (job["cost_usd"], job["tokens_in"], job["session_id"]) == (0.30, 100, f"sess-{first}")
    assert (job["branch"], job["files_changed"]) == (f"luzia/{first}", 1), job
    assert git(repo, "show", f"luzia/{first}:a.txt") == "write=a.txt cost=0.30\n"
    assert "working on write=a.txt cost=0.30" in log_of(fleet, first)
    assert user_state(repo) == before

    # a usage limit halfway: its work so far is the branch's end commit, and the attempt that
    # resumes the conversation at the reset goes on from there, not from the base
    paused = fleet.submit("app", "write=b.txt limit=3")
    wait_for(lambda: fleet.state(paused) == "paused", 60)
    wait_for(lambda: fleet.state(paused) == "completed", 60)
    job = job_of(fleet, paused)
    assert (len(job["attempts"]), job["pauses"]) == (2, 1)
    assert {"b.txt", "resumed.txt"} <= set(git(repo, "ls-tree", "--name-only", job["branch"]).split())
    assert f"resumed session sess-{paused} with b.txt" in log_of(fleet, paused)
    assert job["cost_usd"] == 0.06 and job["files_changed"] == 2      # $0.01 + $0.05, both files
    assert user_state(repo) == before
