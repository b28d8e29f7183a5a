"""Git snapshots end to end: a real broker and agent run a job that edits a real repository;
`luzia diff` shows its changes, `luzia revert` undoes them or refuses on a conflict, and the
user's branch, index and own edits are never touched."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.fleet import PY, fleet_config
from tests.helpers import wait_for

EDITOR = """
import pathlib, sys
root = pathlib.Path('.')
(root / 'notes.txt').write_text('one\\ntwo\\n')
(root / 'new.txt').write_text('made by the job\\n')
(root / 'gone.txt').unlink()
print('edited', sys.argv[1])
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture
def repo(short_tmp) -> Path:
    repo = short_tmp / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for name, text in {"notes.txt": "one\n", "gone.txt": "old\n", "user.txt": "mine\n"}.items():
        (repo / name).write_text(text)
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    (repo / "user.txt").write_text("mine, edited before the job\n")   # the user's own work
    (repo / "staged.txt").write_text("staged\n")
    git(repo, "add", "staged.txt")                                     # ... and their index
    return repo


def test_diff_and_revert_a_jobs_changes(make_fleet, repo):
    agent = f'runner = "subprocess"\ncommand = {json.dumps([PY, "-c", EDITOR, "{task}"])}'
    fleet = make_fleet(fleet_config(agent) + f'\n[projects.repo]\nworkdir = "{repo}"\n[projects.demo]\n')
    fleet.start_broker()
    fleet.start_agent("local")
    head, index = git(repo, "rev-parse", "HEAD"), git(repo, "diff", "--cached", "--name-status")
    job_id = fleet.submit("repo", "edit the notes")
    wait_for(lambda: fleet.state(job_id) == "completed", 30)
    # the user's branch and index are as they were; the snapshots are refs of their own
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "diff", "--cached", "--name-status") == index
    assert git(repo, "for-each-ref", "--format=%(refname)", f"refs/luzia/{job_id}").split() == \
        [f"refs/luzia/{job_id}/after", f"refs/luzia/{job_id}/before"]

    out = fleet.cli("diff", job_id)
    assert out.returncode == 0, out.stderr
    diff = out.stdout.decode()
    assert "+two" in diff and "new.txt" in diff and "gone.txt" in diff
    assert "user.txt" not in diff and "staged.txt" not in diff   # not the job's doing
    data = json.loads(fleet.cli("diff", job_id, "--json").stdout)
    assert data["patch"] == diff and data["state"] == "completed"
    assert {f["path"]: (f["added"], f["removed"]) for f in data["files"]} == {
        "gone.txt": (0, 1), "new.txt": (1, 0), "notes.txt": (1, 0)}
    out = fleet.cli("revert", job_id, "--dry-run")
    assert out.stdout.decode() == (f"job {job_id} can be reverted: would restore 3 files in {repo} "
                                   "(gone.txt, new.txt, notes.txt); dry run: nothing was changed\n")
    assert (repo / "new.txt").exists()

    (repo / "notes.txt").write_text("one\nTWO, edited after the job\n")    # a later change
    out = fleet.cli("revert", job_id)
    err = out.stderr.decode().strip()
    assert out.returncode == 1 and "later changes conflict" in err and "notes.txt" in err
    assert len(err.splitlines()) == 1
    assert (repo / "new.txt").exists()                                   # nothing was changed

    (repo / "notes.txt").write_text("one\ntwo\n")
    out = fleet.cli("revert", job_id)
    assert out.returncode == 0, out.stderr
    assert "3 files restored" in out.stdout.decode()
    assert (repo / "notes.txt").read_text() == "one\n" and (repo / "gone.txt").read_text() == "old\n"
    assert not (repo / "new.txt").exists()
    assert (repo / "user.txt").read_text() == "mine, edited before the job\n"
    assert git(repo, "diff", "--cached", "--name-status") == index

    again = fleet.cli("revert", job_id)
    assert again.returncode == 1 and "reverted already" in again.stderr.decode()

    demo = fleet.submit("demo", "no repository here")      # (the editor fails there: no gone.txt)
    wait_for(lambda: fleet.state(demo) in ("completed", "failed"), 30)
    out = fleet.cli("diff", demo)
    assert out.returncode == 1 and "not in a git repository" in out.stderr.decode()
