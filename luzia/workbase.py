"""A workspace job's base, checked or made where the CLI runs (luzia.client.build): a base
that a local repo on this host does not have is refused at submit (exit 2) instead of
failing the job later, and `--with-local-changes` makes the user's uncommitted work the
base: a commit of the working tree through a temporary index (luzia/snapshots.py), kept
under refs/luzia/<job id>/base, so the user's branch, index, stash and files stay as they
are. Standard library and snapshots only: it runs on the submit path.
"""

from __future__ import annotations

from luzia import snapshots
from luzia.errors import LuziaError, UsageError


def check_base(repo: str, base: str) -> None:
    """Refuse a base that the local `repo` cannot resolve."""
    _toplevel(repo)
    out = snapshots.git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options",
                        f"{base}^{{commit}}", check=False)
    if out.returncode:
        raise UsageError(f"unknown base {base!r} in {repo} (a branch, tag or commit there)")


def local_changes(repo: str, job_id: str, base: str, dry_run: bool = False) -> tuple[str, str]:
    """(the base's name for people, its commit): the checkout as it is now, uncommitted and
    untracked (not ignored) files included, on top of its HEAD (no commit for a dry run)."""
    top = _toplevel(repo)
    try:
        branch = snapshots.git(top, "symbolic-ref", "--short", "-q", "HEAD", check=False)
        on = branch.stdout.decode().strip() or "a detached HEAD"
        if dry_run:
            return f"local changes on {on}"[:256], ""
        commit = snapshots.capture(top, f"luzia: job {job_id} base: the local changes on {on}")
        snapshots.git(top, "update-ref", "-m", f"luzia job {job_id}",
                      snapshots.ref(job_id, "base"), commit)
    except snapshots.SnapshotError as exc:
        raise LuziaError(f"cannot snapshot the local changes in {top}: {exc}") from None
    return f"local changes on {on}"[:256], commit


def _toplevel(repo: str) -> str:
    top = snapshots.toplevel(repo)
    if top is None:
        raise UsageError(f"repo {repo} is not a git repository (or git is not installed)")
    return top
