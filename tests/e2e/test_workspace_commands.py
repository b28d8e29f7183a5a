"""The workspace commands end to end: `--with-local-changes`, `luzia workspace`, `luzia
discard` (the agent removes worktree and branch), `luzia pr` (with and without gh), a push
that fails while the job runs and succeeds on a later try, cleanup after workspace_keep, and
the worktrees' disk in `luzia agents status`."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.e2e.test_workspaces import config, ended, project
from tests.fleet import PY, jobs_json
from tests.gitrepo import git, job_branches, make_repo, user_state, worktrees
from tests.helpers import wait_for

# copies user.txt into job.txt; a task naming a path renames that path away (an origin
# that becomes unreachable while the job runs)
COPIER = """
import os, pathlib, sys
if sys.argv[1] != "-":
    os.rename(sys.argv[1], sys.argv[1] + ".away")
pathlib.Path("job.txt").write_text(pathlib.Path("user.txt").read_text())
print("copied", flush=True)
"""


@pytest.fixture(autouse=True)
def _no_user_git_config(monkeypatch, short_tmp):
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(short_tmp / "gitconfig"))


def copier(projects: str, agent: str = "") -> str:
    text = config(projects, agent)
    return text.replace(json.dumps([PY, "-c", _editor(), "{task}"]),
                        json.dumps([PY, "-c", COPIER, "{task}"]))


def _editor() -> str:
    from tests.e2e.test_workspaces import EDITOR
    return EDITOR


def test_local_changes_discard_and_the_workspace_view(make_fleet, short_tmp):
    repo = make_repo(short_tmp / "repo")
    fleet = make_fleet(copier(project("app", str(repo))))
    fleet.start_broker()
    fleet.start_agent("local")
    before = user_state(repo)
    job_id = fleet.submit("app", "-", "--with-local-changes")
    job = ended(fleet, job_id)[0]
    assert job["state"] == "completed", job
    assert git(repo, "show", f"luzia/{job_id}:job.txt") == "mine, edited before the job\n"
    assert job["base_commit"] == git(repo, "rev-parse", f"refs/luzia/{job_id}/base").strip()
    assert job["base"] == "local changes on main"
    assert user_state(repo) == before                  # the snapshot took nothing from the user
    view = fleet.cli("workspace", job_id).stdout.decode()
    assert f"local:{job['workspace']}" in view and f"luzia/{job_id}" in view
    assert fleet.cli("workspace", job_id, "--path").stdout.decode().strip() == job["workspace"]

    dry = fleet.cli("discard", job_id, "--dry-run")
    assert dry.returncode == 0 and b"nothing was changed" in dry.stdout
    assert job_branches(repo) == [f"luzia/{job_id}"] and Path(job["workspace"]).is_dir()
    out = fleet.cli("discard", job_id)
    assert out.returncode == 0 and b"its agent local deletes" in out.stdout, out
    wait_for(lambda: fleet.job(job_id)["workspace"] == "", 60)
    assert job_branches(repo) == [] and worktrees(repo) == [str(repo)]
    assert not Path(job["workspace"]).exists() and fleet.job(job_id)["outcome"] == "discarded"
    assert user_state(repo) == before
    refused = fleet.cli("merge", job_id)
    assert refused.returncode == 1 and b"discarded" in refused.stderr


def test_pr_with_and_without_gh(make_fleet, short_tmp):
    repo = make_repo(short_tmp / "repo")
    remote = short_tmp / "remote.git"
    git(short_tmp, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    fleet = make_fleet(copier(project("app", str(repo))))
    fleet.start_broker()
    fleet.start_agent("local")
    job_id = fleet.submit("app", "-")
    ended(fleet, job_id)
    bare_path = {**fleet.env, "PATH": "/usr/bin:/bin"}
    import subprocess
    out = subprocess.run([PY, "-m", "luzia.cli", "pr", job_id], env=bare_path, capture_output=True)
    assert out.returncode == 1 and b"needs the GitHub CLI, gh" in out.stderr
    bin_dir = short_tmp / "bin"
    bin_dir.mkdir()
    gh = bin_dir / "gh"
    record = str(short_tmp / "gh.json")
    gh.write_text(f"#!{PY}\nimport json, os, sys\njson.dump(sys.argv[1:], open({record!r}, 'w'))\n"
                  "print('https://github.com/o/r/pull/7')\n")
    gh.chmod(gh.stat().st_mode | stat.S_IXUSR)
    with_gh = {**fleet.env, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    out = subprocess.run([PY, "-m", "luzia.cli", "pr", job_id], env=with_gh, capture_output=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().strip() == "https://github.com/o/r/pull/7"
    argv = json.loads((short_tmp / "gh.json").read_text())
    assert argv[:4] == ["pr", "create", "--head", f"luzia/{job_id}"]
    assert git(remote, "rev-parse", f"luzia/{job_id}") == git(repo, "rev-parse", f"luzia/{job_id}")


def test_a_failed_push_is_retried_and_worktrees_go_after_keep(make_fleet, short_tmp):
    origin = make_repo(short_tmp / "origin", dirty=False)
    fleet = make_fleet(copier(project("app", f"file://{origin}"),
                              agent="push_retry = 1.0\nworkspace_keep = 3.0"))
    fleet.start_broker()
    fleet.start_agent("local")
    job_id = fleet.submit("app", str(origin))           # the job takes the origin away
    job = ended(fleet, job_id)[0]
    assert job["state"] == "completed" and job["exit_code"] == 0     # its end is unchanged
    assert job["push"].startswith("failed: push to file://") and job["push"].endswith("(retrying)")
    assert b"the agent tries again" in fleet.cli("logs", job_id).stdout
    assert "push       failed" in fleet.cli("jobs", job_id).stdout.decode()
    os.rename(f"{origin}.away", origin)
    wait_for(lambda: fleet.job(job_id)["push"] == "pushed", 60)
    assert git(origin, "rev-parse", f"luzia/{job_id}").strip() == job["head_commit"]
    wait_for(lambda: fleet.job(job_id)["workspace"] == "", 60)        # removed after keep
    assert not Path(job["workspace"]).exists()
    status = jobs_json(fleet.cli("agents", "status", "--json"))[0]
    assert status["workspace_bytes"] > 0 and status["workspaces"] == 0   # the mirror stays
    table = fleet.cli("agents", "status").stdout.decode()
    assert "WORKTREES" in table and "0, " in table
