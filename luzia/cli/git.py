"""`luzia diff ID` and `luzia revert ID`: what a job changed in its git work directory, and
undoing it.

The agent's wrapper recorded the repository as commits under `refs/luzia/<id>/before` and
`/after` (luzia/snapshots.py). These commands ask the broker for the job's work directory
and host, then act on that repository when it is on this host; a job that ran elsewhere is
named with the host to run the command on (docs/DECISIONS.md, 18).
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any

import click

from luzia import snapshots
from luzia.cli import branch as branches
from luzia.cli.control import connect, dump, fetch_job
from luzia.cli.render import TERMINAL, clean
from luzia.errors import LuziaError


class GitJob:
    """A job and its repository on this host, with the refs the wrapper left in it."""

    def __init__(self, job_id: str, job: dict[str, Any] | None = None) -> None:
        if job is None:
            with connect() as ctl:
                job = fetch_job(ctl, job_id)
        self.job: dict[str, Any] = job
        self.id = clean(self.job["id"], 64)
        self.state = clean(self.job.get("state"), 32)
        workdir = self.job.get("workdir")
        self.workdir = workdir if isinstance(workdir, str) else ""
        if not self.workdir:
            raise LuziaError(f"job {self.id} ran in its own job directory, not in a git "
                             "repository: it has no snapshots")
        repo = snapshots.toplevel(self.workdir)
        before = repo and snapshots.resolve(repo, self.id, "before")
        if not repo or not before:
            raise LuziaError(self._no_snapshot(repo))
        self.repo: str = repo
        self.before: str = before

    def _no_snapshot(self, repo: str | None) -> str:
        host = clean(self.job.get("host"), 255) or "an agent"
        where = clean(self.workdir, 300)
        if repo is None and not os.path.isdir(self.workdir):
            return (f"job {self.id}'s work directory {where} is not on this host; it ran on "
                    f"{host}: run `luzia {click.get_current_context().info_name} {self.id}` there")
        if self.state in ("pending", "assigned"):
            return f"job {self.id} has not started yet ({self.state}): no snapshot to compare"
        return (f"job {self.id} left no git snapshot in {where} on this host (it ran on {host}; "
                "not a git repository when it ran?)")

    def after(self) -> str:
        """The `after` snapshot; while the job runs, the working tree as it is now."""
        after = snapshots.resolve(self.repo, self.id, "after")
        if after and self.state in TERMINAL:
            return after
        if self.state in TERMINAL:
            raise LuziaError(f"job {self.id} ended without an `after` snapshot "
                             "(its wrapper was killed?); compare by hand with "
                             f"git diff {snapshots.ref(self.id, 'before')}")
        return snapshots.capture(self.repo, f"luzia: job {self.id} so far")


def git_errors(fn):
    """A git failure is a one-line error, not a traceback (here and in workspace.py)."""
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except snapshots.SnapshotError as exc:
            raise LuziaError(str(exc)) from None
    return wrapped


@click.command("diff")
@click.argument("job_id")
@click.option("--stat", is_flag=True, help="Only the changed files and their line counts.")
@click.option("--json", "as_json", is_flag=True,
              help="JSON: {id, state, repo, before, after, files: [{path, added, removed}], patch}.")
@git_errors
def diff(job_id: str, stat: bool, as_json: bool) -> None:
    """What job JOB_ID changed in its git work directory (all attempts; so far, while it
    runs), or on its branch when it had a workspace (docs/WORKSPACES.md). Untracked files
    count, ignored ones do not."""
    with connect() as ctl:
        found = fetch_job(ctl, job_id)
    if found.get("repo"):
        ws = branches.JobBranch.of(found)
        repo, after = ws.here()
        job_id, state, before = ws.id, ws.state, ws.base_commit
    else:
        job = GitJob(job_id, found)
        repo, before, after = job.repo, job.before, job.after()
        job_id, state = job.id, job.state
    if as_json:
        dump({"id": job_id, "state": state, "repo": repo, "before": before, "after": after,
              "files": _numstat(repo, before, after),
              "patch": snapshots.diff(repo, before, after).decode(errors="replace")})
        return
    out = snapshots.diff(repo, before, after, *(["--stat"] if stat else []))
    sys.stdout.buffer.write(out)     # bytes as git wrote them (click's get_binary_stream is deprecated)
    sys.stdout.buffer.flush()


def _numstat(repo: str, before: str, after: str) -> list[dict[str, Any]]:
    """Each changed file with its lines added and removed (None for a binary file)."""
    files = []
    numstat = snapshots.git(repo, "diff", "--numstat", before, after).stdout
    for line in numstat.decode(errors="replace").splitlines():
        added, removed, path = (line.split("\t", 2) + ["", ""])[:3]
        files.append({"path": path, "added": int(added) if added.isdigit() else None,
                      "removed": int(removed) if removed.isdigit() else None})
    return files


@click.command()
@click.argument("job_id")
@click.option("--dry-run", "-n", "check", is_flag=True,
              help="Only say what it would restore, and whether it would apply; change nothing.")
@click.option("--check", "check", is_flag=True, hidden=True)      # the older spelling
@git_errors
def revert(job_id: str, check: bool) -> None:
    """Undo what job JOB_ID changed in its work directory, keeping later changes to other
    lines; refused (nothing changed) when later changes conflict with it."""
    job = GitJob(job_id)
    if job.state not in TERMINAL:
        raise LuziaError(f"job {job.id} is still {job.state}; cancel it first "
                         f"(luzia cancel {job.id})")
    after = job.after()
    patch = snapshots.diff(job.repo, job.before, after)
    if not patch:
        click.echo(f"job {job.id} changed nothing; nothing to revert")
        return
    trial = snapshots.git(job.repo, "apply", "-R", "--check", "-", input=patch, check=False)
    if trial.returncode:
        raise LuziaError(_refusal(job, patch, trial.stderr))
    files = snapshots.diff(job.repo, job.before, after, "--name-only").decode().splitlines()
    if check:
        shown = ", ".join(clean(f, 120) for f in files[:10]) + (" …" if len(files) > 10 else "")
        click.echo(f"job {job.id} can be reverted: would restore {len(files)} files in "
                   f"{job.repo} ({shown}); dry run: nothing was changed")
        return
    snapshots.git(job.repo, "apply", "-R", "-", input=patch)
    click.echo(f"reverted job {job.id}: {len(files)} files restored in {job.repo}")


def _refusal(job: GitJob, patch: bytes, stderr: bytes) -> str:
    forward = snapshots.git(job.repo, "apply", "--check", "-", input=patch, check=False)
    if forward.returncode == 0:
        return f"job {job.id} looks reverted already (its changes are not in the working tree)"
    lines = [ln for ln in stderr.decode(errors="replace").splitlines() if ln.startswith("error:")]
    why = lines[0].removeprefix("error:").strip() if lines else "the patch does not apply"
    return (f"cannot revert job {job.id}: later changes conflict ({clean(why, 200)}); "
            "nothing was changed")


COMMANDS = (diff, revert)
