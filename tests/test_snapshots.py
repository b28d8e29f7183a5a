"""luzia/snapshots.py on a real repository: refs only, the user's index and branch untouched."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

from luzia import snapshots


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True).stdout


def test_snapshots_leave_index_and_branch_alone_and_keep_the_first_before(tmp_path):
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.txt").write_text("a\n")
    (repo / ".gitignore").write_text("*.log\n")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    index = (repo / ".git" / "index").read_bytes()
    sub = repo / "sub"
    sub.mkdir()
    first = snapshots.record(str(sub), "010203-aaaaaaaaaaaa", "before")    # from a subdirectory
    (repo / "b.txt").write_text("b\n")
    (repo / "noise.log").write_text("ignored\n")
    assert snapshots.record(str(repo), "010203-aaaaaaaaaaaa", "before") == first   # a retry
    after = snapshots.record(str(repo), "010203-aaaaaaaaaaaa", "after")
    assert first and after
    changed = snapshots.diff(str(repo), first, after, "--name-only").decode().split()
    assert changed == ["b.txt"]
    assert (repo / ".git" / "index").read_bytes() == index
    assert git(repo, "status", "--porcelain").split() == ["??", "b.txt"]
    assert git(repo, "log", "--format=%s").split("\n")[0] == "start"


def test_not_a_repository_is_no_snapshot(tmp_path):
    assert snapshots.record(str(tmp_path), "010203-aaaaaaaaaaaa", "before") is None
    assert snapshots.toplevel("") is None


def test_a_job_records_nothing_when_snapshots_are_off(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("a\n")
    log = io.BytesIO()
    snapshots.record_for_job({"cwd": str(tmp_path), "git_snapshots": False}, "010203-aaaaaaaaaaaa",
                             "before", log)
    assert snapshots.resolve(str(tmp_path), "010203-aaaaaaaaaaaa", "before") is None
    snapshots.record_for_job({"cwd": str(tmp_path)}, "010203-aaaaaaaaaaaa", "before", log)
    assert snapshots.resolve(str(tmp_path), "010203-aaaaaaaaaaaa", "before")   # (no commit yet)
    assert log.getvalue() == b""
