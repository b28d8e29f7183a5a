"""Real git repositories for the workspace tests, and what "the user's checkout is
untouched" means, taken as a snapshot: their branch and where it points, every ref but the
jobs' own (refs/heads/luzia/*, refs/luzia/*), the index's entries, the stash, and every
working file's content."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

ID = ["-c", "user.name=user", "-c", "user.email=user@example.com"]


def git(repo: Path | str, *args: str, check: bool = True) -> str:
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if check and out.returncode:
        raise AssertionError(f"git {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def make_repo(path: Path, files: dict[str, str] | None = None, dirty: bool = True) -> Path:
    """A repository on `main` with one commit; with `dirty`, the user's own work in progress:
    an unstaged edit, a staged new file, an untracked file and a stash entry."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "user")
    git(path, "config", "user.email", "user@example.com")
    files = files or {"notes.txt": "one\ntwo\nthree\n", "user.txt": "mine\n",
                      ".gitignore": ".env\n"}
    for name, text in files.items():
        (path / name).write_text(text)
    git(path, "add", ".")
    git(path, "commit", "-qm", "start")
    if dirty:
        (path / "user.txt").write_text("stashed edit\n")
        git(path, "stash", "-q")
        (path / "user.txt").write_text("mine, edited before the job\n")
        (path / "staged.txt").write_text("staged\n")
        git(path, "add", "staged.txt")
        (path / "scratch.txt").write_text("untracked\n")
        (path / ".env").write_text("SECRET=1\n")
    return path


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD").strip()


def user_state(repo: Path) -> dict[str, object]:
    """Everything of the user's that a job must never change."""
    refs = [line for line in git(repo, "for-each-ref", "--format=%(refname) %(objectname)").splitlines()
            if not line.startswith(("refs/heads/luzia/", "refs/luzia/"))]
    files = {}
    for top, dirs, names in os.walk(repo):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in names:
            path = Path(top) / name
            files[str(path.relative_to(repo))] = hashlib.sha1(path.read_bytes()).hexdigest()
    return {"head": git(repo, "symbolic-ref", "HEAD").strip(),
            "commit": git(repo, "rev-parse", "HEAD").strip(), "refs": refs,
            "index": git(repo, "ls-files", "--stage"), "stash": git(repo, "stash", "list"),
            "files": files}


def job_branches(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/luzia/").split()


def worktrees(repo: Path) -> list[str]:
    return [line.split(" ", 1)[1] for line in git(repo, "worktree", "list", "--porcelain").splitlines()
            if line.startswith("worktree ")]
