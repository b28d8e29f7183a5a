"""Workspaces' bad input and failures end to end: what the CLI can tell is refused at submit
(exit 2, one line, no job); what only the agent's host can tell fails the job with one line
naming the cause (an unknown base of a URL repo, an unreachable repo, a branch that exists,
a full disk) — never a half-made worktree, never a touched branch, index or stash."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.e2e.test_workspaces import config, ended, project
from tests.fleet import PY
from tests.gitrepo import git, job_branches, make_repo, user_state, worktrees


@pytest.fixture(autouse=True)
def _no_user_git_config(monkeypatch, short_tmp):
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(short_tmp / "gitconfig"))


def test_what_the_cli_can_tell_is_refused_at_submit(make_fleet, short_tmp):
    repo = make_repo(short_tmp / "repo")
    fleet = make_fleet(config(project("app", str(repo)) + project("far", "file:///nowhere.git")))
    before = user_state(repo)
    cases = [
        (["app", "x", "--base", "no-such"], f"unknown base 'no-such' in {repo}"),
        (["app", "x", "--base=--upload-pack=touch"], "is not a branch, tag or commit name"),
        (["demo", "x", "--base", "main"], "project demo has no repo"),
        (["far", "x", "--with-local-changes"], "needs project far's repo on this host"),
        (["app", "x", "--base", "main", "--with-local-changes"], "not allowed with argument"),
    ]
    for argv, expected in cases:
        out = fleet.cli(*argv)
        err = out.stderr.decode().strip()
        assert out.returncode == 2 and expected in err and len(err.splitlines()) == 1, (argv, err)
    assert not list(fleet.home.glob("spool/*.job"))          # no job was queued
    assert user_state(repo) == before
    bad = short_tmp / "bad.toml"
    bad.write_text(f'home = "{short_tmp}/h"\n[projects.x]\nsetup = ["make"]\n')
    out = subprocess.run([PY, "-m", "luzia.cli", "x", "task"], capture_output=True,
                         env={**fleet.env, "LUZIA_CONFIG": str(bad)})
    assert out.returncode == 2 and b"projects.x.setup needs projects.x.repo" in out.stderr


def test_what_only_the_agent_can_tell_fails_the_job_with_one_line(make_fleet, short_tmp):
    repo = make_repo(short_tmp / "repo")
    origin = make_repo(short_tmp / "origin", dirty=False)
    fleet = make_fleet(config(project("app", str(repo)) + project("url", f"file://{origin}")
                              + project("gone", f"file://{short_tmp}/nowhere.git")))
    fleet.start_broker()
    # submitted while no agent runs: the branch its job will want is made first
    clash = fleet.submit("app", "CLASH")
    git(repo, "branch", f"luzia/{clash}")
    before = user_state(repo)
    unknown = fleet.submit("url", "X", "--base", "no-such")
    unreachable = fleet.submit("gone", "X")
    fleet.start_agent("local")
    jobs = ended(fleet, clash, unknown, unreachable)
    expected = [f"workspace: branch luzia/{clash} already exists in {repo}",
                f"workspace: unknown base 'no-such' in file://{origin}",
                f"workspace: cannot fetch file://{short_tmp}/nowhere.git"]
    for job, reason in zip(jobs, expected, strict=True):
        assert job["state"] == "failed" and job["reason"].startswith(reason), job["reason"]
        assert "\n" not in job["reason"] and job["exit_code"] == 125
        assert job["files_changed"] is None and job["head_commit"] == ""
    assert user_state(repo) == before and job_branches(repo) == [f"luzia/{clash}"]
    assert worktrees(repo) == [str(repo)] and worktrees(origin) == [str(origin)]
    assert job_branches(origin) == []
    made = fleet.home / "workspaces"
    left = sorted(p.name for p in made.glob("*/*") if p.is_dir())
    assert left == ["mirror.git"], left            # url's mirror; no worktree of any of them


@pytest.fixture
def tiny_disk(short_tmp):
    """A 1 MB file system: a worktree of a larger repository does not fit."""
    where = short_tmp / "tiny"
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield where
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_full_disk_while_making_the_worktree_fails_the_job_and_leaves_nothing(
        make_fleet, short_tmp, tiny_disk):
    repo = make_repo(short_tmp / "repo", {"big.bin": "x" * 3_000_000, "notes.txt": "a\nb\n"})
    fleet = make_fleet(config(project("app", str(repo)),
                              agent=f"workspace_dir = {json.dumps(str(tiny_disk))}"))
    fleet.start_broker()
    fleet.start_agent("local")
    before = user_state(repo)
    job_id = fleet.submit("app", "X")
    job = ended(fleet, job_id)[0]
    assert job["state"] == "failed" and "no space left on device" in job["reason"], job["reason"]
    assert job["reason"].startswith("workspace: cannot make the worktree")
    assert not (tiny_disk / "app" / job_id).exists()
    assert user_state(repo) == before and job_branches(repo) == [] and worktrees(repo) == [str(repo)]
    assert not any(p.name == job_id for p in tiny_disk.rglob("*") if p.is_dir())
