"""`luzia workspace ID`, `luzia merge ID`, `luzia discard ID`, `luzia pr ID`: a workspace
job's worktree and branch (docs/WORKSPACES.md), from any host with the CLI; and the
workspace lines of `luzia jobs ID`. `luzia diff ID` (git.py) shows a branch too.

The branch is merged here, in the user's checkout (luzia/cli/branch.py), and the broker
records it (workspace.merged); a discard is done by the job's agent, which the broker asks
(workspace.discard). Every command takes --json; those that change something --dry-run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

import click

from luzia import gitref
from luzia.cli import branch as branches
from luzia.cli.control import connect, dump, fetch_job
from luzia.cli.git import git_errors
from luzia.cli.job_views import workspace_lines
from luzia.cli.render import TERMINAL, clean
from luzia.errors import LuziaError

DRY_RUN_HELP = "Say what it would do; change nothing."
GITHUB_RE = re.compile(r"^(?:https?://|ssh://git@|git@)github\.com[/:]([\w.-]+)/([\w.-]+?)(?:\.git)?/?$")


def _job(job_id: str) -> dict[str, Any]:
    with connect() as ctl:
        return fetch_job(ctl, job_id)


def _record(op: str, **args: Any) -> dict[str, Any]:
    with connect() as ctl:
        result = ctl.call(op, **args)
    if not isinstance(result, dict):
        raise LuziaError(f"the broker answered {op} with something that is not a job")
    return result


# luzia workspace ------------------------------------------------------------------------
@click.command("workspace")
@click.argument("job_id")
@click.option("--path", "path_only", is_flag=True,
              help="Only the worktree's path, for `cd $(luzia workspace ID --path)` on its host.")
@click.option("--json", "as_json", is_flag=True, help="JSON: {id, host, path, branch, repo, "
              "base, base_commit, head_commit, files_changed, push, outcome, here}.")
def workspace(job_id: str, path_only: bool, as_json: bool) -> None:
    """Where job JOB_ID's worktree is (host and path) and what is on its branch."""
    job = _job(job_id)
    if not job.get("repo"):
        raise LuziaError(f"job {clean(job.get('id'))} runs without a workspace (its project has "
                         "no repo)")
    path = clean(job.get("workspace"), 4096)
    host = clean(job.get("workspace_host"), 255)
    here = bool(path) and os.path.isdir(path)
    if as_json:
        keys = ("id", "repo", "branch", "base", "base_commit", "head_commit", "files_changed",
                "lines_added", "lines_removed", "push", "outcome")
        dump({**{k: job.get(k) for k in keys}, "host": host, "path": path, "here": here})
        return
    if path_only:
        if not path:
            raise LuziaError(f"job {clean(job.get('id'))} has no worktree (not made yet, or "
                             "removed after agent.workspace_keep)")
        if not here:
            raise LuziaError(f"job {clean(job.get('id'))}'s worktree is on {host or '?'}: {path}")
        click.echo(path)
        return
    click.echo("\n".join([f"job        {clean(job.get('id'))}  ({clean(job.get('state'))})"]
                         + workspace_lines(job, verbose=True)))


# luzia merge -----------------------------------------------------------------------------
@click.command()
@click.argument("job_id")
@click.option("--squash", is_flag=True, help="One commit on your branch, not a merge commit.")
@click.option("--into", "checkout", metavar="PATH", type=click.Path(file_okay=False),
              help="The checkout to merge into (default: the project's repo when it is a "
                   "local path here, else the current directory's repository).")
@click.option("--dry-run", "-n", is_flag=True, help=DRY_RUN_HELP + " (every check is made)")
@click.option("--json", "as_json", is_flag=True,
              help="JSON: {id, checkout, into, branch, commit, files, already, dry_run}.")
@git_errors
def merge(job_id: str, squash: bool, checkout: str | None, dry_run: bool, as_json: bool) -> None:
    """Merge job JOB_ID's branch into the current branch of your checkout. Refused, with
    nothing changed, on a conflict or a dirty tree (the files are named)."""
    job = branches.JobBranch.of(_job(job_id))
    if not job.ended:
        raise LuziaError(f"job {job.id} is still {job.state}; merge it once it has ended")
    if job.outcome == "discarded":
        raise LuziaError(f"job {job.id}'s work was discarded (its branch {job.branch} deleted)")
    if not job.head_commit:
        click.echo(f"job {job.id} changed nothing: nothing to merge")
        return
    where = checkout or (job.repo if not job.url and os.path.isdir(job.repo) else os.getcwd())
    plan = branches.plan_merge(job, where)
    out: dict[str, Any] = {"id": job.id, "checkout": plan.checkout, "into": plan.into, "branch": job.branch,
                           "files": plan.files, "already": plan.already, "dry_run": dry_run,
                           "commit": ""}
    if not dry_run and not plan.already:
        out["commit"] = branches.merge(job, plan, squash)
    if not dry_run:
        _mark_merged(job, squash, out)
    if as_json:
        dump(out)
    elif plan.already:
        click.echo(f"job {job.id}'s branch {job.branch} is merged into {plan.into} already")
    elif dry_run:
        click.echo(f"job {job.id}: would merge {job.branch} into {plan.into} of "
                   f"{plan.checkout} ({plan.stat or 'no file changes'}"
                   f"{', squashed' if squash else ''}); dry run: nothing was changed")
    else:
        click.echo(f"merged job {job.id} into {plan.into} of {plan.checkout} "
                   f"({plan.stat}){' as one commit' if squash else ''}: {out['commit'][:10]}")


def _mark_merged(job: branches.JobBranch, squash: bool, out: dict[str, Any]) -> None:
    """Tell the broker; a merge done without the broker's record is said, not undone."""
    try:
        _record("workspace.merged", id=job.id, how="squashed" if squash else "merged")
    except LuziaError as exc:
        out["recorded"] = False
        click.echo(f"luzia: merged, but the broker could not record it ({clean(exc, 200)}); "
                   f"`luzia jobs {job.id}` shows it as not merged", err=True)


# luzia discard ---------------------------------------------------------------------------
@click.command()
@click.argument("job_id")
@click.option("--dry-run", "-n", is_flag=True, help=DRY_RUN_HELP)
@click.option("--json", "as_json", is_flag=True, help="JSON: the job, with `removing`.")
def discard(job_id: str, dry_run: bool, as_json: bool) -> None:
    """Throw job JOB_ID's work away: its agent deletes the worktree and the branch (for a
    URL repo, the pushed branch too), now or as soon as it is back."""
    job = _job(job_id)
    jid, host, name = clean(job.get("id")), clean(job.get("workspace_host")), clean(job.get("branch"))
    if not job.get("repo"):
        raise LuziaError(f"job {jid} ran without a workspace (its project has no repo)")
    if clean(job.get("state")) not in TERMINAL:
        raise LuziaError(f"job {jid} is still {clean(job.get('state'))}; cancel it first "
                         f"(luzia cancel {jid})")
    if dry_run:
        what = (f"its agent {host} would delete the worktree {clean(job.get('workspace'))} and "
                f"the branch {name}") if job.get("workspace") else f"the branch {name} would be deleted"
        if as_json:
            dump({**job, "dry_run": True})
        else:
            click.echo(f"job {jid}: {what}; dry run: nothing was changed")
        return
    result = _record("workspace.discard", id=jid)
    if as_json:
        dump(result)
    elif result.get("removing"):
        click.echo(f"discarded job {jid}: its agent {host} deletes its worktree and branch "
                   f"{name} (now, or once it is back)")
    else:
        click.echo(f"discarded job {jid} (no worktree is left to remove)")


# luzia pr ---------------------------------------------------------------------------------
@click.command()
@click.argument("job_id")
@click.option("--dry-run", "-n", is_flag=True, help="Print the gh command; run nothing.")
@click.option("--json", "as_json", is_flag=True, help="JSON: {id, branch, argv, cwd, url}.")
@git_errors
def pr(job_id: str, dry_run: bool, as_json: bool) -> None:
    """Open a pull request for job JOB_ID's branch with the GitHub CLI (gh)."""
    job = branches.JobBranch.of(_job(job_id))
    if not job.ended:
        raise LuziaError(f"job {job.id} is still {job.state}; open its pull request once it ended")
    if not job.head_commit:
        raise LuziaError(f"job {job.id} changed nothing: no pull request to open")
    gh = shutil.which("gh")
    if gh is None:
        raise LuziaError("`luzia pr` needs the GitHub CLI, gh (https://cli.github.com); "
                         f"without it, push {job.branch} and open the pull request by hand")
    cwd, extra = _pr_target(job)
    title = job.subject()
    body = f"Made by Luzia job {job.id} (project {job.project}).\n\n{job.task[:4000]}"
    base = ["--base", job.base] if job.base and not gitref.is_commit(job.base) \
        and not job.base.startswith("local changes") else []
    argv = [gh, "pr", "create", "--head", job.branch, "--title", title, "--body", body,
            *base, *extra]
    if dry_run or as_json:
        out = {"id": job.id, "branch": job.branch, "argv": argv, "cwd": cwd, "url": ""}
        if not dry_run:
            out["url"] = _run_gh(argv, cwd)
        if as_json:
            dump(out)
        else:
            click.echo(f"would run in {cwd}: gh pr create --head {job.branch} --title "
                       f"{title!r}{' ' + ' '.join(base) if base else ''}; dry run: nothing was done")
        return
    click.echo(_run_gh(argv, cwd))


def _pr_target(job: branches.JobBranch) -> tuple[str, list[str]]:
    """Where gh runs and what it is told: a local repo pushes the branch to its remote
    first; a URL repo (pushed already) is named to gh when it is on GitHub."""
    if job.url:
        if job.push != "pushed":
            raise LuziaError(f"{job.branch} is not in {job.repo} yet (push: {job.push or '?'})")
        m = GITHUB_RE.match(job.repo)
        if not m:
            raise LuziaError(f"gh opens pull requests on GitHub; {clean(job.repo, 200)} is not "
                             "a GitHub repository")
        return os.getcwd(), ["--repo", f"{m.group(1)}/{m.group(2)}"]
    repo, _ = job.here()
    remotes = branches.git(repo, "remote").split()
    if not remotes:
        raise LuziaError(f"{repo} has no remote to open a pull request on "
                         "(`git remote add origin URL` first)")
    remote = "origin" if "origin" in remotes else remotes[0]
    branches.git(repo, "push", "-q", remote, f"refs/heads/{job.branch}:refs/heads/{job.branch}")
    return repo, []


def _run_gh(argv: list[str], cwd: str) -> str:
    try:
        out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LuziaError(f"gh: {exc}") from None
    if out.returncode:
        lines = (out.stderr or out.stdout).strip().splitlines()
        raise LuziaError(f"gh pr create failed: {clean(lines[-1] if lines else out.returncode, 300)}")
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


COMMANDS = (workspace, merge, discard, pr)
