"""A job's git workspace on its agent's host (docs/WORKSPACES.md): made before the job's
command starts, its end committed after the command ends, its branch pushed home.

    <agent.workspace_dir>/<project>/<job id>/        the worktree, on branch luzia/<job id>
    <agent.workspace_dir>/<project>/<job id>.json    its record (this module, the sweeper)
    <agent.workspace_dir>/<project>/mirror.git       a URL repo's bare mirror, one per project
    <agent.workspace_dir>/locks/<repo hash>.lock     one git writer per repository at a time

A local `repo` gets the worktree (and the branch) in the user's repository itself; a URL
repo in the mirror, fetched before each job, the branch pushed back after. The user's
branch, index, stash and files are never touched: Luzia's git commands write only the
worktree, its branch and refs/luzia/<job id>/*, and run no hooks.

The job's wrapper (wrap.py) and the interactive runner's watcher (repl.py) call `prepare`
and `finish`, so the agent's loop never waits for git; the sweeper (worktrees.py) calls
`push` and `remove`. A failure is one line (`WorkspaceError`), the job's log says it, and
nothing half-made stays behind. Standard library only: the wrapper imports it per job.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from luzia import gitref, layout
from luzia.agents.workgit import (
    PUSH_TIMEOUT,
    WorkspaceError,
    disk_note,
    git,
    locked,
    rev,
)
from luzia.jobstatus import attempt_record

MIRROR = "mirror.git"
IDENTITY = {"GIT_AUTHOR_NAME": "luzia", "GIT_AUTHOR_EMAIL": "luzia@localhost",
            "GIT_COMMITTER_NAME": "luzia", "GIT_COMMITTER_EMAIL": "luzia@localhost"}
SUBJECT_MAX = 72


# the plan: what the agent writes into meta.json -----------------------------------------
def plan(root: str, prefix: str, job: dict[str, Any], attempt: int, setup: list[str],
         copy: list[str], push_retry: float = 60.0) -> dict[str, Any]:
    """Where job `job` (its JobSpec as a map) works and what makes its worktree."""
    repo, project, job_id = job["repo"], job["project"], job["id"]
    url = gitref.is_url(repo)
    pdir = os.path.join(root, project)
    return {"job_id": job_id, "project": project, "repo": repo, "url": url,
            "git_dir": os.path.join(pdir, MIRROR) if url else repo,
            "base": job.get("base", ""), "base_commit": job.get("base_commit", ""),
            "branch": prefix + job_id, "path": os.path.join(pdir, job_id),
            "record": os.path.join(pdir, job_id + ".json"),
            "lock": os.path.join(root, "locks", hashlib.sha1(repo.encode()).hexdigest()[:16] + ".lock"),
            "attempt": attempt, "setup": list(setup), "copy": list(copy),
            "push_retry": push_retry}


# the record -----------------------------------------------------------------------------
def read_record(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_record(path: str, data: dict[str, Any]) -> None:
    """Atomic (a reader sees the old record or the new), not fsync'd: a record matters
    while its host runs, and it is written three times at every job's start."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


class Record:
    """A workspace's record on disk, changed field by field."""

    def __init__(self, path: str, data: dict[str, Any] | None = None) -> None:
        self.path = path
        self.data = read_record(path) if data is None else data

    def __getitem__(self, key: str) -> Any:
        return self.data.get(key)

    def save(self, **fields: Any) -> None:
        self.data.update(fields)
        write_record(self.path, self.data)


def say(log, text: str) -> None:
    log.write(f"luzia: workspace: {text}\n".encode())


# making it --------------------------------------------------------------------------------
def prepare(ws: dict[str, Any], job_dir: str, env: dict[str, str], log,
            pid_file: str | None = None, host: str = "") -> None:
    """Make the job's worktree at its base, copy the ignored files, run `setup`. Raises
    WorkspaceError with nothing of it left behind (the job fails with that line)."""
    record = Record(ws["record"], {})
    try:
        os.makedirs(os.path.dirname(ws["record"]), mode=0o700, exist_ok=True)
        record.save(job_id=ws["job_id"], project=ws["project"], repo=ws["repo"], url=ws["url"],
                    git_dir=ws["git_dir"], branch=ws["branch"], path=ws["path"],
                    base=ws["base"], base_commit="", attempt=ws["attempt"], host=host,
                    job_dir=job_dir, lock=ws["lock"], state="preparing",
                    created_at=time.time(), error="",
                    ended_at=0.0, end={}, push={}, discard=False)
        made = _make(ws, record, log)
        try:
            _copy(ws, log)
            _setup(ws, env, log, pid_file)
        except BaseException:
            _unmake(ws, made)
            raise
    except WorkspaceError as exc:
        _failed(ws, record, job_dir, str(exc), log)
        raise
    except OSError as exc:          # the record itself (a full disk): say so all the same
        line = f"cannot make the workspace: {exc.strerror or exc}"
        _failed(ws, record, job_dir, line, log)
        raise WorkspaceError(line) from None
    record.save(state="ready")


def _failed(ws: dict[str, Any], record: Record, job_dir: str, line: str, log) -> None:
    say(log, line)
    with contextlib.suppress(OSError):
        with open(os.path.join(job_dir, layout.WORKSPACE_ERROR), "w") as f:
            f.write(line + "\n")
    with contextlib.suppress(OSError):
        record.save(state="failed", error=line, ended_at=time.time())
    with contextlib.suppress(OSError):
        if os.path.isdir(ws["path"]) and not os.listdir(ws["path"]):
            os.rmdir(ws["path"])    # the empty directory the agent made for the tmux session


def _make(ws: dict[str, Any], record: Record, log) -> dict[str, str]:
    """The worktree on its branch at the base commit; what was made (for `_unmake`)."""
    with locked(ws["lock"]):
        if ws["url"]:
            mirror(ws, log)
        else:
            _check_local(ws)
        commit = _base(ws)
        record.save(base_commit=commit)     # the agent reports it: retries start from it
        old_tip, lease = _branch(ws)
        made = {"commit": commit, "old_tip": old_tip}
        # an attempt that resumes the agent's conversation (docs/AGENTS.md) goes on from
        # where the last one ended: the agent remembers that work
        start = old_tip if ws.get("resume") and old_tip else commit
        if os.path.isdir(ws["path"]) and os.listdir(ws["path"]):
            shutil.rmtree(ws["path"])       # an earlier attempt's, no longer registered
        try:
            git(ws["git_dir"], "worktree", "add", "-q", "-B" if old_tip else "-b", ws["branch"],
                ws["path"], start, what="cannot make the worktree")
        except WorkspaceError as exc:
            full = disk_note(os.path.dirname(ws["path"]))     # before the clean-up frees it
            _unmake(ws, made, locked_already=True)
            raise WorkspaceError(f"{exc}{full}") from None
    record.save(base_commit=commit, push={"lease": lease, "retry": ws.get("push_retry", 60.0)}
                if ws["url"] else {})
    say(log, f"worktree {ws['path']} on branch {ws['branch']} at {gitref.short(start)}"
             + (" (the last attempt's end: resumed)" if start != commit else
                f"{' (' + ws['base'] + ')' if ws['base'] else ''}"))
    return made


def _check_local(ws: dict[str, Any]) -> None:
    repo = ws["repo"]
    if not os.path.isdir(repo):
        raise WorkspaceError(f"repo {repo} does not exist on this host")
    found = git(repo, "rev-parse", "--show-toplevel", check=False)
    top = found.stdout.decode().strip()
    if found.returncode and git(repo, "rev-parse", "--git-dir", check=False).returncode:
        raise WorkspaceError(f"repo {repo} is not a git repository")   # (a bare one has no top)
    if top and (ws["path"] + os.sep).startswith(os.path.realpath(top) + os.sep):
        raise WorkspaceError(f"worktree {ws['path']} would be inside the repository {top}; "
                             "set agent.workspace_dir outside it")


def mirror(ws: dict[str, Any], log) -> None:
    """The project's bare mirror of a URL repo, made once (whole or not at all), fetched."""
    path = ws["git_dir"]
    if not os.path.isdir(path):
        tmp = f"{path}.tmp"        # under the lock: one maker; a killed one's is redone
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            git(os.path.dirname(path), "init", "-q", "--bare", tmp)
            git(tmp, "remote", "add", "origin", ws["repo"])
            _fetch(tmp, ws["repo"])
            git(tmp, "remote", "set-head", "origin", "--auto", check=False)
            os.rename(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        say(log, f"mirrored {ws['repo']} in {path}")
    else:
        _fetch(path, ws["repo"])


def _fetch(mirror_dir: str, url: str) -> None:
    # the remote's branches as remote-tracking refs: the jobs' own branches (refs/heads/*)
    # are never overwritten or pruned by a fetch
    git(mirror_dir, "fetch", "-q", "--prune", "--no-tags", "origin",
        "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*",
        what=f"cannot fetch {url}")


def _base(ws: dict[str, Any]) -> str:
    gd, base, fixed = ws["git_dir"], ws["base"], ws["base_commit"]
    if fixed:
        if not rev(gd, fixed):
            raise WorkspaceError(f"base commit {gitref.short(fixed)} (fixed at the job's first "
                                 f"attempt) is not in {ws['repo']}")
        return fixed
    if ws["url"]:
        names = ([f"refs/remotes/origin/{base}", f"refs/tags/{base}", base] if base else
                 ["refs/remotes/origin/HEAD", "refs/remotes/origin/main",
                  "refs/remotes/origin/master"])
    else:
        names = [base or "HEAD"]
    for name in names:
        commit = rev(gd, name)
        if commit:
            return commit
    if base:
        raise WorkspaceError(f"unknown base {base!r} in {ws['repo']}")
    raise WorkspaceError(f"{ws['repo']} has no commit to start from (no HEAD)")


def _branch(ws: dict[str, Any]) -> tuple[str, str]:
    """Check the job's branch may be (re)made; (its tip here before this attempt or "", the
    remote's tip of it: the push's lease)."""
    gd, branch = ws["git_dir"], ws["branch"]
    tip = rev(gd, f"refs/heads/{branch}")
    remote = rev(gd, f"refs/remotes/origin/{branch}") if ws["url"] else ""
    if ws["attempt"] <= 1 and (tip or remote):
        raise WorkspaceError(f"branch {branch} already exists in {ws['repo']}")
    holder = checked_out_in(gd, branch) if tip else ""    # no branch: checked out nowhere
    if holder and os.path.realpath(holder) == os.path.realpath(ws["path"]):
        git(gd, "worktree", "remove", "--force", "--force", holder, check=False)
    elif holder:
        raise WorkspaceError(f"branch {branch} is checked out in {holder}")
    if tip:     # an earlier attempt's end: kept, the branch starts again from the base
        git(gd, "update-ref", f"refs/luzia/{ws['job_id']}/tip-before-{ws['attempt']}", tip)
    return tip, remote


def checked_out_in(git_dir: str, branch: str) -> str:
    """The worktree that has `branch` checked out, or ""."""
    out = git(git_dir, "worktree", "list", "--porcelain", check=False).stdout.decode()
    path = ""
    for line in out.splitlines():
        if line.startswith("worktree "):
            path = line[len("worktree "):]
        elif line == f"branch refs/heads/{branch}":
            return path
    return ""


def _unmake(ws: dict[str, Any], made: dict[str, str], locked_already: bool = False) -> None:
    """Undo `_make`: the worktree, its directory, and the branch as it was before."""
    with contextlib.nullcontext() if locked_already else locked(ws["lock"]):
        gd = ws["git_dir"]
        git(gd, "worktree", "remove", "--force", "--force", ws["path"], check=False)
        shutil.rmtree(ws["path"], ignore_errors=True)
        git(gd, "worktree", "prune", check=False)
        if made.get("old_tip"):
            git(gd, "update-ref", f"refs/heads/{ws['branch']}", made["old_tip"], check=False)
        elif rev(gd, f"refs/heads/{ws['branch']}"):
            git(gd, "branch", "-D", ws["branch"], check=False)   # ours: it did not exist before


def _copy(ws: dict[str, Any], log) -> None:
    """The listed files of the user's checkout that git does not track (.env, local config)."""
    for rel in ws["copy"]:
        src, dst = os.path.join(ws["repo"], rel), os.path.join(ws["path"], rel)
        tracked = git(ws["repo"], "ls-files", "--error-unmatch", "--", rel, check=False)
        if tracked.returncode == 0:
            say(log, f"copy: {rel} is tracked by git; the worktree has it already")
            continue
        if not os.path.lexists(src):
            say(log, f"copy: {rel} is not in {ws['repo']}; skipped")
            continue
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        try:
            if os.path.isdir(src) and not os.path.islink(src):
                shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dst, follow_symlinks=False)
        except OSError as exc:
            raise WorkspaceError(f"copy: cannot copy {rel}: {exc.strerror or exc}") from None
        say(log, f"copied {rel}")


def _setup(ws: dict[str, Any], env: dict[str, str], log, pid_file: str | None) -> None:
    """The project's setup in the new worktree, its output in the job's log. Its pid is the
    job's while it runs, so a cancel or a timeout stops it like the command."""
    argv = ws["setup"]
    if not argv:
        return
    say(log, f"setup: {shlex.join(argv)}")
    try:
        proc = subprocess.Popen(argv, cwd=ws["path"], env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        raise WorkspaceError(f"setup cannot start {argv[0]!r}: {exc.strerror or exc}") from None
    if pid_file:
        _write_pid(pid_file, proc.pid, log)
    code = proc.wait()
    if code:
        status = 128 - code if code < 0 else code
        raise WorkspaceError(f"setup failed (exit {status}): {shlex.join(argv)}"[:500], status)


def _write_pid(path: str, pid: int, log) -> None:
    """Setup's pid, best effort, in a `pid` file of its own: the pid field of `process`,
    which the agent reserved, is the command's, written once (a disk that fills during setup
    still takes that one; issue 17). JobDir.pid reads this file while that field is blank."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.setup.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(f"{pid}\n")
        os.replace(tmp, path)
    except OSError as exc:
        say(log, f"setup's pid {pid} not recorded ({exc.strerror or exc}): a cancel waits for it")


# ending it --------------------------------------------------------------------------------
def stop_reason(job_dir: str) -> str:
    """Why the agent stopped the job (cancelled, timeout, ...) as it wrote in its record;
    "" when the job ended by itself."""
    return str(attempt_record(Path(job_dir))[0].get("reason") or "")


def finish(ws: dict[str, Any], task: str, code: int, reason: str, log) -> None:
    """Commit everything the job changed (tracked and untracked, not ignored) on its branch
    as one commit naming the job, its task and its end; "no changes" is recorded, never an
    empty commit. A URL repo's branch is then pushed home. Never raises: the job's end
    stays what it was, a failure here is a line in its log and its record."""
    record = Record(ws["record"])
    if record["state"] != "ready":
        return          # no worktree was made (its failure is recorded already)
    end = f"{reason or ('completed' if code == 0 else 'failed')} (exit {code})"
    try:
        with locked(ws["lock"]):     # one git writer per repository: two jobs ending at once
            summary = commit_end(ws, record, task, end)     # (or a commit's auto gc) collide
    except (WorkspaceError, OSError) as exc:
        summary = {"commit": "", "files": -1, "added": 0, "removed": 0,
                   "note": f"end commit failed: {exc}"}
    say(log, summary["note"])
    with contextlib.suppress(OSError):
        record.save(state="ended", ended_at=time.time(), end=summary)
        if ws["url"] and summary["commit"]:
            push(record, log)


def commit_end(ws: dict[str, Any], record: Record, task: str, end: str) -> dict[str, Any]:
    path, base = ws["path"], record["base_commit"]
    git(path, "add", "-A", "--", ".", what="end commit: git add")
    dirty = git(path, "diff", "--cached", "--quiet", "HEAD", check=False).returncode == 1
    if dirty:
        first = (task.strip().splitlines() or [""])[0].strip()
        subject = f"luzia {ws['job_id']}: {first}"
        if len(subject) > SUBJECT_MAX:
            subject = subject[:SUBJECT_MAX - 1] + "…"
        body = (f"Job {ws['job_id']} of project {ws['project']}, attempt {ws['attempt']}, "
                f"ended: {end}.\n\nLuzia-Job: {ws['job_id']}\nLuzia-End: {end}\n")
        git(path, "commit", "-q", "--no-verify", "-m", subject, "-m", body,
            env=_identity(path), what="end commit")
    head = rev(path, "HEAD")
    files, added, removed = numstat(path, base, head)
    if files == 0:
        note = "no changes"
    else:
        note = (f"{'committed' if dirty else 'no uncommitted changes at the end'}: "
                f"{files} files, +{added} -{removed} on {ws['branch']} ({gitref.short(head)})")
    return {"commit": head if files else "", "files": files, "added": added,
            "removed": removed, "note": note}


def _identity(path: str) -> dict[str, str]:
    """The repository's own identity if it has one, else luzia's."""
    name = git(path, "config", "user.name", check=False).stdout.strip()
    email = git(path, "config", "user.email", check=False).stdout.strip()
    # git would refuse to commit without both (and guess badly from the host name)
    return {} if name and email else IDENTITY


def numstat(cwd: str, old: str, new: str) -> tuple[int, int, int]:
    """(files, lines added, lines removed) from `old` to `new`; binary files count as files."""
    if not old or not new or old == new:
        return 0, 0, 0
    out = git(cwd, "diff", "--numstat", "--no-renames", old, new).stdout.decode(errors="replace")
    files = added = removed = 0
    for line in out.splitlines():
        parts = line.split("\t", 2)
        if len(parts) == 3:
            files += 1
            added += int(parts[0]) if parts[0].isdigit() else 0
            removed += int(parts[1]) if parts[1].isdigit() else 0
    return files, added, removed


def push(record: Record, log=None) -> bool:
    """Push the branch to the repo, over whatever the remote had of it when the job began
    (--force-with-lease: a branch someone else moved meanwhile is not overwritten)."""
    data, push_state = record.data, dict(record["push"] or {})
    branch, lease = data["branch"], push_state.get("lease", "")
    ref = f"refs/heads/{branch}"
    try:
        git(data["git_dir"], "push", "-q", "--porcelain", f"--force-with-lease={ref}:{lease}",
            "origin", f"{ref}:{ref}", timeout=PUSH_TIMEOUT, what=f"push to {data['repo']}")
    except WorkspaceError as exc:
        tries = int(push_state.get("tries", 0)) + 1
        delay = min(3600.0, float(push_state.get("retry") or 60.0) * 2 ** (tries - 1))
        push_state.update(state="failed", error=str(exc), tries=tries,
                          next_at=time.time() + delay)
        record.save(push=push_state)
        if log is not None:
            say(log, f"{exc} (the agent tries again in {delay:.0f}s; the job's end is unchanged)")
        return False
    push_state.update(state="pushed", error="", lease=rev(data["git_dir"], ref),
                      pushed_at=time.time())
    record.save(push=push_state)
    if log is not None:
        say(log, f"pushed {branch} to {data['repo']}")
    return True


def remove(record: Record, branch: str) -> None:
    """Remove the worktree; its branch: "keep" it, delete it "local"ly (in the user's
    repository or the mirror), or "everywhere" (a URL repo's pushed branch on the remote
    too). The record says it was removed. The sweeper's, for kept-too-long and discarded."""
    data = record.data
    gd, ref = data["git_dir"], f"refs/heads/{data['branch']}"
    with locked(data["lock"]):
        if os.path.isdir(gd):
            git(gd, "worktree", "remove", "--force", "--force", data["path"], check=False)
        shutil.rmtree(data["path"], ignore_errors=True)
        if os.path.isdir(gd):
            git(gd, "worktree", "prune", check=False)
            pushed = (record["push"] or {}).get("state") == "pushed"
            if branch == "everywhere" and data.get("url") and pushed:
                lease = (record["push"] or {}).get("lease", "")
                git(gd, "push", "-q", f"--force-with-lease={ref}:{lease}", "origin",
                    f":{ref}", timeout=PUSH_TIMEOUT, what=f"delete {data['branch']} in "
                    f"{data['repo']}")
            if branch != "keep" and rev(gd, ref):
                git(gd, "branch", "-D", data["branch"], check=False)
    record.save(state="removed", removed_at=time.time())


def restore_tip(record: Record, attempt: int) -> None:
    """A killed attempt reset the branch to the base: put back where the one before left it."""
    data = record.data
    tip = rev(data["git_dir"], f"refs/luzia/{data['job_id']}/tip-before-{attempt}")
    if tip:
        git(data["git_dir"], "update-ref", f"refs/heads/{data['branch']}", tip, check=False)
