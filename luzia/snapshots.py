"""Git snapshots of a job's work directory (the pre-task snapshot of seed 001, the older
responsive dispatcher — see docs/GLOSSARY.md — made safe).

Before a job runs and after it ends, the whole repository's working tree (tracked files and
untracked ones that are not ignored) is recorded as a commit object under
`refs/luzia/<job id>/before` and `/after`, through a temporary index: the user's branch,
index, stash and files are never touched. `before` is kept from the first attempt, so the
diff covers every attempt of the job. `luzia diff` and `luzia revert` read these refs.

Used by the job's wrapper (so the agent's loop never waits for git) and by the CLI.
Standard library only: the wrapper imports it at every job start.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

GIT_TIMEOUT = 300          # seconds for one git command (a snapshot hashes changed files)
IDENTITY = {"GIT_AUTHOR_NAME": "luzia", "GIT_AUTHOR_EMAIL": "luzia@localhost",
            "GIT_COMMITTER_NAME": "luzia", "GIT_COMMITTER_EMAIL": "luzia@localhost"}


class SnapshotError(Exception):
    """git failed; the message is one line."""


def git(repo: str, *args: str, env: dict[str, str] | None = None, check: bool = True,
        input: bytes | None = None) -> subprocess.CompletedProcess:
    try:
        out = subprocess.run(["git", "-C", repo, *args], capture_output=True, input=input,
                             env={**os.environ, **(env or {})}, timeout=GIT_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SnapshotError(f"git {args[0]}: {exc}") from None
    if check and out.returncode:
        raise SnapshotError(f"git {args[0]}: {last_line(out.stderr) or f'exit {out.returncode}'}")
    return out


def last_line(stderr: bytes) -> str:
    """git's last line of complaint ("" if it said nothing)."""
    err = stderr.decode(errors="replace").strip().splitlines()
    return err[-1] if err else ""


def toplevel(path: str) -> str | None:
    """The repository holding `path`, or None when it is not in a git work tree."""
    if not path or not os.path.isdir(path) or not shutil.which("git"):
        return None
    out = git(path, "rev-parse", "--show-toplevel", check=False)
    return out.stdout.decode().strip() or None if out.returncode == 0 else None


def ref(job_id: str, which: str) -> str:
    return f"refs/luzia/{job_id}/{which}"


def resolve(repo: str, job_id: str, which: str) -> str | None:
    out = git(repo, "rev-parse", "--verify", "--quiet", f"{ref(job_id, which)}^{{commit}}",
              check=False)
    return out.stdout.decode().strip() or None if out.returncode == 0 else None


def capture(repo: str, message: str) -> str:
    """A commit of the working tree as it is now, made with a temporary index."""
    git_dir = git(repo, "rev-parse", "--absolute-git-dir").stdout.decode().strip()
    with tempfile.TemporaryDirectory(prefix="luzia-snap-") as tmp:
        index = os.path.join(tmp, "index")
        real = os.path.join(git_dir, "index")
        if os.path.exists(real):
            shutil.copyfile(real, index)   # a copy: its stat cache spares rehashing clean files
        env = {"GIT_INDEX_FILE": index, **IDENTITY}
        git(repo, "add", "-A", "--", ".", env=env)
        tree = git(repo, "write-tree", env=env).stdout.decode().strip()
    head = git(repo, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False)
    parent = ["-p", head.stdout.decode().strip()] if head.returncode == 0 else []
    return git(repo, "commit-tree", tree, *parent, "-m", message,
               env=IDENTITY).stdout.decode().strip()


def record(workdir: str, job_id: str, which: str) -> str | None:
    """Snapshot `workdir`'s repository as `which` (before/after); None if not a repository.
    An existing `before` is kept (a retry's changes count from the first attempt)."""
    repo = toplevel(workdir)
    if repo is None:
        return None
    if which == "before" and (kept := resolve(repo, job_id, "before")):
        return kept
    commit = capture(repo, f"luzia: job {job_id} {which}")
    git(repo, "update-ref", "-m", f"luzia job {job_id}", ref(job_id, which), commit)
    return commit


def diff(repo: str, old: str, new: str, *extra: str) -> bytes:
    """The patch from `old` to `new` (binary files too), or what `extra` asks for instead
    (--stat, --name-only: with --binary git would print the patch as well)."""
    return git(repo, "diff", *(extra or ("--binary",)), old, new).stdout


def record_for_job(meta: dict, job_id: str, which: str, log) -> None:
    """`record` for a job's wrapper, unless agent.git_snapshots is off (meta.json says):
    a failure is a line in the job's log, never the job's end."""
    if not meta.get("git_snapshots", True):
        return
    workdir = str(meta.get("cwd", ""))
    try:
        record(workdir, job_id, which)
    except SnapshotError as exc:
        log.write(f"luzia: no git snapshot {which} the job: {exc}\n".encode())
