"""`python -m luzia.agents.sweep ROOT KEEP --held IDS --discard IDS`: the agent's periodic
look at its workspaces (docs/WORKSPACES.md), in a process of its own so that the agent's
loop never waits for git (worktrees.py starts it every minute or so):

- a discarded job's worktree and branch are removed (a URL repo's branch on the remote too);
- an ended job's worktree is removed KEEP seconds after its end; its branch stays (in the
  user's repository, or pushed home), unless it holds no change;
- a push that failed is tried again once its backoff is over;
- a job whose wrapper was killed before its end commit gets that commit now; one killed
  while its worktree was being made has it taken apart;
- the disk the worktrees and mirrors use is measured.

The jobs the agent holds (--held) are left alone, and so is a record made after the agent
listed what it holds (--since: its job may have been assigned since; the sweeper's own start
is later still, and once let it take apart a worktree a job was making). What it did goes to
ROOT/sweep.json for the agent, which tells the broker in its heartbeats.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from luzia import layout
from luzia.agents import workspace
from luzia.agents.workspace import Record
from luzia.jobstatus import attempt_record, read_exit_code

RESULT = "sweep.json"


class Sweep:
    def __init__(self, root: Path, keep: float, held: set[str], discard: set[str],
                 since: float | None = None) -> None:
        self.root, self.keep, self.held, self.discard = root, keep, held, discard
        self.started = time.time() if since is None else since   # when `held` was true
        self.pushed: list[str] = []
        self.removed: list[str] = []            # worktrees removed (discarded, or kept long enough)
        self.log: list[str] = []

    def run(self) -> dict[str, Any]:
        found = set()
        for path in sorted(self.root.glob("*/*.json")):
            if path.name.startswith("."):
                continue
            record = Record(str(path))
            job_id = record["job_id"]
            if not isinstance(job_id, str) or job_id in self.held:
                continue
            found.add(job_id)
            try:
                self.one(path, record)
            except (workspace.WorkspaceError, OSError, KeyError, TypeError) as exc:
                self.log.append(f"job {job_id}: {exc}")
        # asked to discard a workspace this host no longer has: nothing is left to remove
        self.removed += sorted(self.discard - found - self.held)
        used, trees = usage(self.root)
        return {"at": time.time(), "bytes": used, "worktrees": trees, "pushed": self.pushed,
                "removed": sorted(set(self.removed)), "log": self.log[-50:]}

    def one(self, path: Path, record: Record) -> None:
        job_id, state = record["job_id"], record["state"]
        if job_id in self.discard:
            if state != "failed":
                workspace.remove(record, "everywhere")
            path.unlink(missing_ok=True)
            self.removed.append(job_id)
            self.log.append(f"job {job_id}: discarded; its worktree and branch are removed")
            return
        if float(record["created_at"] or 0) >= self.started:
            return              # made after the agent listed what it holds: not ours to judge
        if state in ("preparing", "ready"):
            self.left_over(record)
        push = record["push"] or {}
        if push.get("state") == "failed" and float(push.get("next_at") or 0) <= time.time():
            if workspace.push(record):
                self.pushed.append(job_id)
                self.log.append(f"job {job_id}: pushed {record['branch']} on a later try")
        over = time.time() - float(record["ended_at"] or 0) > self.keep
        if record["state"] == "ended" and over:
            workspace.remove(record, self.branch_after_keep(record))
            self.removed.append(job_id)
            self.log.append(f"job {job_id}: worktree removed {self.keep:g}s after its end")
        elif record["state"] == "failed" and over:
            path.unlink(missing_ok=True)
            return
        # the record stays while its branch does: a later discard deletes the branch
        if (record["state"] == "removed" and (record["push"] or {}).get("state") != "failed"
                and not workspace.rev(record["git_dir"], f"refs/heads/{record['branch']}")):
            path.unlink(missing_ok=True)

    def branch_after_keep(self, record: Record) -> str:
        """Keep the branch (the job's result) unless it holds nothing, or a URL repo's
        mirror copy is no longer needed (pushed: the remote has it)."""
        end = record["end"] or {}
        if not end.get("commit"):
            return "local"
        if record["url"]:
            return "local" if (record["push"] or {}).get("state") == "pushed" else "keep"
        return "keep"

    def left_over(self, record: Record) -> None:
        """A job no longer held whose wrapper never finished its workspace (killed)."""
        data = record.data
        job_dir = Path(str(data.get("job_dir") or "/nonexistent"))
        if record["state"] == "preparing":
            attempt = int(data.get("attempt") or 1)
            workspace.remove(record, "local" if attempt <= 1 else "keep")
            workspace.restore_tip(record, attempt)
            record.save(state="failed", error="its wrapper was killed while making it",
                        ended_at=time.time())
            self.log.append(f"job {data['job_id']}: half-made worktree taken apart")
            return
        code, reason, task = -1, "runner: process vanished", ""
        found = read_exit_code(job_dir)      # None while none is recorded; never raises
        code = code if found is None else found
        reason = attempt_record(job_dir)[0].get("reason") or reason
        with contextlib.suppress(OSError, ValueError, AttributeError):
            task = json.loads((job_dir / layout.META).read_text())["job"]["task"]
        with open(os.devnull, "wb") as sink:
            workspace.finish({**data, "record": record.path}, task, code, f"{reason}, late", sink)
        record.data = workspace.read_record(record.path)
        self.log.append(f"job {data['job_id']}: end committed late (its wrapper was killed)")


def usage(root: Path) -> tuple[int, int]:
    """(bytes on disk under `root`, worktrees there: <root>/<project>/<job id>/.git)."""
    used = trees = 0
    for top, dirs, files in os.walk(root):
        if len(Path(top).relative_to(root).parts) == 2 and ".git" in files:
            trees += 1
        for name in files + dirs:
            with contextlib.suppress(OSError):
                used += os.lstat(os.path.join(top, name)).st_blocks * 512
    return used, trees


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m luzia.agents.sweep")
    p.add_argument("root")
    p.add_argument("keep", type=float)
    p.add_argument("--held", default="")
    p.add_argument("--discard", default="")
    p.add_argument("--since", type=float, default=None)
    args = p.parse_args(argv)
    root = Path(args.root)
    ids = {name: {i for i in getattr(args, name).split(",") if i} for name in ("held", "discard")}
    result = Sweep(root, args.keep, ids["held"], ids["discard"], args.since).run()
    workspace.write_record(str(root / RESULT), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
