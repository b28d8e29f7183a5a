"""A workspace job's branch as the CLI reaches it from this host, and merging it
(docs/WORKSPACES.md). No click here: workspace.py and git.py show what it returns.

Where the branch is: with a local `repo` it is in that repository (on the host where the
job ran); with a URL repo it is in the repository behind the URL once the agent pushed it.
`luzia diff` reads it where it is here, or fetches it into a cache of this user's
(`$XDG_CACHE_HOME/luzia/repos/`); `luzia merge` fetches it into the user's checkout under
refs/luzia/<id>/branch when the checkout does not have it. Every check before a merge
(`git merge-tree --write-tree`) changes nothing, so a refusal leaves the checkout as it was.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from luzia import gitref, snapshots
from luzia.cli.render import TERMINAL, clean
from luzia.errors import LuziaError, Refused

SHOWN = 5           # files named in a refusal


def git(repo: str, *args: str, check: bool = True, input: bytes | None = None) -> str:
    return snapshots.git(repo, *args, check=check, input=input).stdout.decode(errors="replace")


def commit_of(repo: str, name: str) -> str:
    out = snapshots.git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options",
                        f"{name}^{{commit}}", check=False)
    return out.stdout.decode().strip() if out.returncode == 0 else ""


def _files(names: list[str]) -> str:
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(clean(n, 120) for n in names[:SHOWN]) + more


@dataclass
class JobBranch:
    """The branch of one workspace job, from its job object."""

    id: str
    state: str
    project: str
    task: str
    repo: str
    base: str
    base_commit: str
    branch: str
    head_commit: str
    host: str
    push: str
    outcome: str

    @classmethod
    def of(cls, job: dict[str, Any]) -> JobBranch:
        def text(key: str, width: int = 4096) -> str:
            value = job.get(key)
            return value if isinstance(value, str) and len(value) <= width else ""
        found = cls(id=clean(job.get("id"), 64), state=clean(job.get("state"), 32),
                    project=text("project", 64), task=text("task", 65536), repo=text("repo"),
                    base=text("base", 256), base_commit=text("base_commit", 64),
                    branch=text("branch", 256), head_commit=text("head_commit", 64),
                    host=text("workspace_host", 255) or text("host", 255), push=text("push"),
                    outcome=text("outcome", 32))
        if not found.repo:
            raise LuziaError(f"job {found.id} ran without a workspace (its project has no "
                             "repo); `luzia diff` shows its snapshots if its workdir is a git "
                             "repository")
        if not found.branch or not gitref.valid(found.branch) or \
                not gitref.is_commit(found.base_commit):
            raise LuziaError(f"job {found.id} is {found.state} and has no branch yet (its "
                             "worktree is made when it starts)")
        return found

    @property
    def url(self) -> bool:
        return gitref.is_url(self.repo)

    @property
    def ended(self) -> bool:
        return self.state in TERMINAL

    def subject(self) -> str:
        first = (self.task.strip().splitlines() or [""])[0].strip()
        return clean(first, 72) or f"luzia job {self.id}"

    # where it is -------------------------------------------------------------------
    def here(self) -> tuple[str, str]:
        """(a repository on this host that has the branch, the branch's commit there):
        the local repo, or a cache fetched from the URL. Raises when neither can be."""
        if not self.url:
            tip = commit_of(self.repo, f"refs/heads/{self.branch}") if \
                os.path.isdir(self.repo) else ""
            if not tip:
                raise LuziaError(self._not_here())
            return self.repo, tip
        cache = _cache_repo(self.repo)
        return cache, self.fetch(cache)

    def _not_here(self) -> str:
        if not os.path.isdir(self.repo):
            return (f"job {self.id}'s branch {self.branch} is in {clean(self.repo, 300)} on "
                    f"{clean(self.host) or 'its agent'}, not on this host: run the command there")
        return f"branch {self.branch} is not in {clean(self.repo, 300)} (discarded, or deleted)"

    def fetch(self, into: str) -> str:
        """Fetch the branch from the job's repo into `into` (refs/luzia/<id>/branch)."""
        ref = snapshots.ref(self.id, "branch")
        out = snapshots.git(into, "fetch", "-q", "--no-tags", "--end-of-options", self.repo,
                            f"+refs/heads/{self.branch}:{ref}", check=False)
        if out.returncode:
            why = self.push if self.push.startswith("failed") else "not there"
            raise LuziaError(f"cannot fetch {self.branch} from {clean(self.repo, 300)} "
                             f"({clean(snapshots.last_line(out.stderr), 200)}); its push: "
                             f"{clean(why, 200)}")
        return commit_of(into, ref)

    def diff(self, *extra: str) -> bytes:
        """The branch against its base (what the job changed, all its commits)."""
        repo, tip = self.here()
        return snapshots.diff(repo, self.base_commit, tip, *extra)


def _cache_repo(url: str) -> str:
    """A bare repository of this user's for fetching `url`'s job branches (made once)."""
    import platformdirs
    root = os.path.join(platformdirs.user_cache_dir("luzia"), "repos")
    path = os.path.join(root, hashlib.sha1(url.encode()).hexdigest()[:16] + ".git")
    if not os.path.isdir(path):
        os.makedirs(root, mode=0o700, exist_ok=True)
        git(root, "init", "-q", "--bare", path)
    return path


# merging -----------------------------------------------------------------------------
@dataclass
class MergePlan:
    """What `luzia merge` would do: into which checkout and branch, what it brings."""

    checkout: str
    into: str                # the checkout's current branch
    tip: str                 # the job branch's commit
    already: bool            # merged before (its tip is in the current branch)
    files: list[str]
    stat: str                # git diff --shortstat of the merge


def plan_merge(job: JobBranch, checkout: str) -> MergePlan:
    """Everything checked, nothing changed: Refused with the files named on a conflict, a
    dirty tree, or untracked files the merge would overwrite."""
    top = snapshots.toplevel(checkout)
    if top is None:
        raise LuziaError(f"{clean(checkout, 300)} is not a git checkout; give one with --into")
    into = git(top, "symbolic-ref", "--short", "-q", "HEAD", check=False).strip()
    if not into:
        raise Refused(f"{top} has a detached HEAD; check out the branch to merge into")
    for busy in ("MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD", "rebase-merge", "rebase-apply"):
        if os.path.exists(git(top, "rev-parse", "--git-path", busy).strip()):
            raise Refused(f"{top} is in the middle of a merge, rebase or cherry-pick; finish it first")
    tip = commit_of(top, f"refs/heads/{job.branch}") or job.fetch(top)
    if job.head_commit and tip != job.head_commit:
        raise Refused(f"branch {job.branch} is at {tip[:10]}, not at the job's end "
                      f"{job.head_commit[:10]}: it was changed since; merge it by hand")
    already = snapshots.git(top, "merge-base", "--is-ancestor", tip, "HEAD",
                            check=False).returncode == 0
    if already:
        return MergePlan(top, into, tip, True, [], "")
    dirty = [line[3:] for line in git(top, "status", "--porcelain=v1", "--untracked-files=no",
                                      "--no-renames").splitlines() if line]
    if dirty:
        raise Refused(f"{top} has uncommitted changes ({_files(dirty)}); commit or stash "
                      "them, then merge; nothing was changed")
    trial = snapshots.git(top, "merge-tree", "--write-tree", "--name-only", "--no-messages",
                          "HEAD", tip, check=False)
    lines = trial.stdout.decode(errors="replace").splitlines()
    if trial.returncode == 1:
        raise Refused(f"job {job.id}'s branch conflicts with {into} in {_files(lines[1:])}; "
                      "nothing was changed")
    if trial.returncode:
        raise LuziaError(f"git merge-tree: {snapshots.last_line(trial.stderr)}")
    tree = lines[0].strip()
    files = git(top, "diff", "--name-only", "--no-renames", "HEAD", tree).splitlines()
    added = git(top, "diff", "--name-only", "--diff-filter=A", "HEAD", tree).splitlines()
    in_way = [f for f in added if os.path.lexists(os.path.join(top, f))]
    if in_way:
        raise Refused(f"untracked files in {top} would be overwritten by the merge "
                      f"({_files(in_way)}); move them away; nothing was changed")
    stat = git(top, "diff", "--shortstat", "HEAD", tree).strip()
    return MergePlan(top, into, tip, False, files, stat)


def merge(job: JobBranch, plan: MergePlan, squash: bool) -> str:
    """Merge as planned (the checks passed); the new HEAD. A failure (a hook) is undone."""
    top = plan.checkout
    trailer = f"Luzia-Job: {job.id}"
    try:
        if squash:
            git(top, "merge", "--squash", "-q", plan.tip)
            git(top, "commit", "-q", "-m", job.subject(), "-m", trailer)
        else:
            git(top, "merge", "--no-ff", "-q", "-m", f"Merge luzia job {job.id}: {job.subject()}",
                "-m", trailer, plan.tip)
    except snapshots.SnapshotError as exc:
        snapshots.git(top, "merge", "--abort", check=False)
        snapshots.git(top, "reset", "--merge", "HEAD", check=False)
        raise LuziaError(f"the merge failed and was undone: {exc}") from None
    return commit_of(top, "HEAD")
