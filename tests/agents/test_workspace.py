"""A job's workspace as its wrapper makes and ends it (luzia/agents/workspace.py), on real
git repositories: the worktree at the base, the end commit (or "no changes"), retries from
the same base, failures that leave nothing behind, and the user's checkout untouched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from luzia.agents import workgit, workspace
from luzia.agents.workspace import Record, WorkspaceError
from tests.gitrepo import commit_all, git, job_branches, make_repo, user_state, worktrees

JOB = "113754-a2f5c10e9b3d"


def plan(root: Path, repo: str, attempt: int = 1, job_id: str = JOB, **over) -> dict:
    job = {"id": job_id, "project": "web", "repo": repo, "base": over.pop("base", ""),
           "base_commit": over.pop("base_commit", "")}
    return workspace.plan(str(root / "ws"), "luzia/", job, attempt, over.pop("setup", []),
                          over.pop("copy", []), push_retry=over.pop("push_retry", 60.0))


@pytest.fixture
def repo(short_tmp) -> Path:
    return make_repo(short_tmp / "repo")


@pytest.fixture
def jobdir(short_tmp) -> Path:
    path = short_tmp / "job"
    path.mkdir()
    return path


def log_of(jobdir: Path):
    return open(jobdir / "output.log", "ab", buffering=0)


def prepare(ws: dict, jobdir: Path) -> None:
    with log_of(jobdir) as log:
        workspace.prepare(ws, str(jobdir), dict(os.environ), log, str(jobdir / "pid"), "h1")


def finish(ws: dict, jobdir: Path, code: int = 0, reason: str = "",
           task: str = "fix the login button\nand more") -> dict:
    with log_of(jobdir) as log:
        workspace.finish(ws, task, code, reason, log)
    return workspace.read_record(ws["record"])


def test_a_worktree_on_its_branch_and_one_end_commit(short_tmp, repo, jobdir):
    before = user_state(repo)
    ws = plan(short_tmp, str(repo), copy=[".env", "user.txt", "nothere"])
    prepare(ws, jobdir)
    path = Path(ws["path"])
    assert git(path, "rev-parse", "--abbrev-ref", "HEAD").strip() == f"luzia/{JOB}"
    assert git(path, "rev-parse", "HEAD") == git(repo, "rev-parse", "HEAD")
    assert (path / ".env").read_text() == "SECRET=1\n"          # ignored: copied
    assert (path / "user.txt").read_text() == "mine\n"         # tracked: as committed
    assert not (path / "staged.txt").exists()                  # the user's index is theirs
    (path / "notes.txt").write_text("one\nTWO\nthree\n")
    (path / "new.txt").write_text("new\n")
    (path / ".env").write_text("changed, and ignored\n")
    record = finish(ws, jobdir)
    assert record["state"] == "ended" and record["end"]["files"] == 2
    assert (record["end"]["added"], record["end"]["removed"]) == (2, 1)
    message = git(repo, "log", "-1", "--format=%B", f"luzia/{JOB}")
    assert message.startswith(f"luzia {JOB}: fix the login button\n")
    assert "ended: completed (exit 0)" in message and f"Luzia-Job: {JOB}" in message
    assert git(repo, "rev-list", "--count", f"main..luzia/{JOB}").strip() == "1"
    assert git(repo, "show", "--name-only", "--format=", f"luzia/{JOB}").split() == \
        ["new.txt", "notes.txt"]
    assert user_state(repo) == before
    log = (jobdir / "output.log").read_text()
    assert "copy: user.txt is tracked" in log and "nothere is not in" in log


def test_no_changes_is_recorded_never_an_empty_commit(short_tmp, repo, jobdir):
    ws = plan(short_tmp, str(repo))
    prepare(ws, jobdir)
    record = finish(ws, jobdir, code=1)
    assert record["end"]["note"] == "no changes" and record["end"]["commit"] == ""
    assert git(repo, "rev-parse", f"luzia/{JOB}") == git(repo, "rev-parse", "main")


def test_the_end_says_how_it_ended_and_the_agents_own_commits_count(short_tmp, repo, jobdir):
    ws = plan(short_tmp, str(repo))
    prepare(ws, jobdir)
    path = Path(ws["path"])
    (path / "a.txt").write_text("a\n")
    commit_all(path, "the agent's own commit")
    (path / "b.txt").write_text("b\n")
    record = finish(ws, jobdir, code=143, reason="timeout")
    assert "ended: timeout (exit 143)" in git(repo, "log", "-1", "--format=%B", f"luzia/{JOB}")
    assert record["end"]["files"] == 2


def test_a_retry_starts_again_from_the_fixed_base_and_keeps_the_earlier_end(short_tmp, repo,
                                                                              jobdir):
    ws = plan(short_tmp, str(repo))
    prepare(ws, jobdir)
    base = workspace.read_record(ws["record"])["base_commit"]
    (Path(ws["path"]) / "first.txt").write_text("attempt 1\n")
    first_end = finish(ws, jobdir, code=1)["end"]["commit"]
    git(repo, "stash", "-q")                  # the user moves on: main has a new commit
    (repo / "later.txt").write_text("later\n")
    commit_all(repo, "later work")
    git(repo, "stash", "pop", "-q")
    again = plan(short_tmp, str(repo), attempt=2, base_commit=base)
    prepare(again, jobdir)
    assert git(again["path"], "rev-parse", "HEAD").strip() == base
    assert not (Path(again["path"]) / "first.txt").exists()
    assert git(repo, "rev-parse", f"refs/luzia/{JOB}/tip-before-2").strip() == first_end


def test_a_url_repo_works_in_a_mirror_and_the_branch_is_pushed_home(short_tmp, jobdir):
    origin = make_repo(short_tmp / "origin", dirty=False)
    ws = plan(short_tmp, f"file://{origin}")
    prepare(ws, jobdir)
    assert ws["git_dir"].endswith("web/mirror.git") and worktrees(origin) == [str(origin)]
    (Path(ws["path"]) / "notes.txt").write_text("changed\n")
    record = finish(ws, jobdir)
    assert record["push"]["state"] == "pushed"
    assert git(origin, "rev-parse", f"luzia/{JOB}").strip() == record["end"]["commit"]
    assert "pushed luzia/" in (jobdir / "output.log").read_text()


def test_a_failed_push_is_a_line_and_is_retried(short_tmp, jobdir):
    origin = make_repo(short_tmp / "origin", dirty=False)
    ws = plan(short_tmp, f"file://{origin}")
    prepare(ws, jobdir)
    (Path(ws["path"]) / "notes.txt").write_text("changed\n")
    os.rename(origin, str(origin) + ".away")
    record = finish(ws, jobdir)
    assert record["state"] == "ended" and record["push"]["state"] == "failed"
    assert "the job's end is unchanged" in (jobdir / "output.log").read_text()
    os.rename(str(origin) + ".away", origin)
    assert workspace.push(Record(ws["record"]))
    assert git(origin, "rev-parse", f"luzia/{JOB}").strip() == record["end"]["commit"]


@pytest.mark.parametrize("case", ["unknown base", "not a repo", "missing", "branch exists",
                                  "setup fails", "unreachable url"])
def test_a_failure_is_one_line_and_leaves_nothing(short_tmp, repo, jobdir, case):
    before = user_state(repo)
    over: dict = {}
    target = str(repo)
    if case == "unknown base":
        over["base"] = "no-such-branch"
    elif case == "not a repo":
        target = str(short_tmp)
    elif case == "missing":
        target = str(short_tmp / "nowhere")
    elif case == "branch exists":
        git(repo, "branch", f"luzia/{JOB}")
        before = user_state(repo)
    elif case == "setup fails":
        over["setup"] = [sys.executable, "-c", "print('setting up'); raise SystemExit(3)"]
    elif case == "unreachable url":
        target = f"file://{short_tmp}/nowhere.git"
    ws = plan(short_tmp, target, **over)
    os.makedirs(ws["path"])             # as the agent makes it, for the tmux session
    with pytest.raises(WorkspaceError) as failed:
        prepare(ws, jobdir)
    line = str(failed.value)
    assert "\n" not in line and line == (jobdir / "workspace-error").read_text().strip()
    expected = {"unknown base": "unknown base 'no-such-branch'", "not a repo": "not a git repository",
                "missing": "does not exist on this host", "branch exists": "already exists",
                "setup fails": "setup failed (exit 3)", "unreachable url": "cannot fetch"}[case]
    assert expected in line
    assert failed.value.code == (3 if case == "setup fails" else workgit.SETUP_FAILED)
    assert not os.path.exists(ws["path"])
    assert not os.path.exists(ws["git_dir"] + ".tmp")
    assert user_state(repo) == before and worktrees(repo) == [str(repo)]
    assert job_branches(repo) == ([f"luzia/{JOB}"] if case == "branch exists" else [])
    assert workspace.read_record(ws["record"])["state"] == "failed"
    finish(ws, jobdir)        # the wrapper calls it whatever happened: nothing to commit


def test_setup_runs_in_the_worktree_as_the_jobs_process(short_tmp, repo, jobdir):
    setup = [sys.executable, "-c", "import os; open('made-by-setup', 'w').write(str(os.getpid()))"]
    ws = plan(short_tmp, str(repo), setup=setup)
    prepare(ws, jobdir)
    made = Path(ws["path"]) / "made-by-setup"
    assert made.read_text() == (jobdir / "pid").read_text().strip()   # a cancel reaches it


def test_a_worktree_inside_the_repository_is_refused(short_tmp, repo, jobdir):
    ws = workspace.plan(str(repo / "ws"), "luzia/", {"id": JOB, "project": "web",
                                                      "repo": str(repo)}, 1, [], [])
    with pytest.raises(WorkspaceError, match="inside the repository"):
        prepare(ws, jobdir)


def test_remove_keeps_or_deletes_the_branch(short_tmp, repo, jobdir):
    ws = plan(short_tmp, str(repo))
    prepare(ws, jobdir)
    (Path(ws["path"]) / "x.txt").write_text("x\n")
    finish(ws, jobdir)
    workspace.remove(Record(ws["record"]), "keep")
    assert not os.path.exists(ws["path"]) and worktrees(repo) == [str(repo)]
    assert job_branches(repo) == [f"luzia/{JOB}"]
    workspace.remove(Record(ws["record"]), "local")
    assert job_branches(repo) == []


def test_concurrent_jobs_in_one_repository_do_not_collide(short_tmp, repo):
    """Each wrapper is its own process; the lock keeps their git writes apart."""
    ids = [f"113754-a2f5c10e9b{n:02x}" for n in range(4)]
    script = ("import sys, os; sys.path.insert(0, sys.argv[1]); from tests.agents.test_workspace "
              "import plan, prepare; from pathlib import Path; "
              "ws = plan(Path(sys.argv[2]), sys.argv[3], job_id=sys.argv[4]); "
              "d = Path(sys.argv[2]) / sys.argv[4]; d.mkdir(); prepare(ws, d)")
    root = str(Path(__file__).resolve().parents[2])
    procs = [subprocess.Popen([sys.executable, "-c", script, root, str(short_tmp), str(repo), i])
             for i in ids]
    assert [p.wait(120) for p in procs] == [0] * 4
    assert sorted(job_branches(repo)) == [f"luzia/{i}" for i in ids]
    assert len(worktrees(repo)) == 5
