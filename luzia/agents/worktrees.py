"""The agent's side of workspaces (docs/WORKSPACES.md); the git work itself is done by the
job's wrapper (workspace.py) and by the sweeper (sweep.py), never in the agent's loop.

- `plan`: a job's workspace in meta.json (this host's workspace_dir, branch prefix and the
  project's `setup`/`copy` from this host's config), and the empty directory its tmux
  session starts in.
- `JobWorkspace`: what the broker hears of one job's workspace: its path and branch in
  Started, its base commit in Progress (once the wrapper fixed it), its end in Done, and
  why it could not be made (the job's reason).
- `Worktrees`: runs the sweeper now and then, hands it the discards the broker asks for,
  and says in the heartbeat what it found (disk use, branches pushed late, worktrees removed).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from luzia import gitref, layout, protocol
from luzia.agents import workspace
from luzia.config import Config

log = logging.getLogger(__name__)

SWEEP_EVERY = 60.0     # seconds between sweeps (shorter when workspace_keep is short)
REPORT_BEATS = 3       # heartbeats that carry a late push or a discard done (no acknowledgement)
SWEEP_RESULT = "sweep.json"
SWEEP_ERRORS = "sweep.log"


def plan(cfg: Config, job: protocol.JobSpec, attempt: int) -> dict[str, Any] | None:
    """meta.json's workspace for `job`, or None when its project has no repo."""
    if not job.repo:
        return None
    project = cfg.projects.get(job.project)
    ws = workspace.plan(cfg.agent.workspace_dir, cfg.agent.branch_prefix,
                        protocol.to_plain(job), attempt,
                        setup=list(project.setup) if project else [],
                        copy=list(project.copy) if project else [],
                        push_retry=cfg.agent.push_retry)
    # the tmux session starts in it; `git worktree add` fills an empty directory
    os.makedirs(ws["path"], mode=0o700, exist_ok=True)
    return ws


class JobWorkspace:
    """One held job's workspace, as its meta.json planned it and its record tells."""

    def __init__(self, job_dir: Path, ws: dict[str, Any]) -> None:
        self.job_dir = job_dir
        self.ws = ws
        self._base = ""

    def record(self) -> dict[str, Any]:
        return workspace.read_record(self.ws["record"])

    def started(self) -> dict[str, str]:
        return {"workspace": str(self.ws["path"])[:4096], "branch": str(self.ws["branch"])[:256]}

    def base_commit(self) -> str:
        """The base the wrapper fixed ("" until it has)."""
        if not self._base:
            self._base = _commit(self.record().get("base_commit"))
        return self._base

    def failure(self) -> str:
        """Why its worktree could not be made ("" if it was)."""
        try:
            line = (self.job_dir / layout.WORKSPACE_ERROR).read_text().strip()
        except OSError:
            return ""
        return f"workspace: {line}"[:protocol.MAX_LINE] if line else ""

    def done(self) -> dict[str, Any]:
        """Done's workspace fields from the record the wrapper left."""
        rec = self.record()
        end, push = rec.get("end"), rec.get("push")
        end = end if isinstance(end, dict) else {}
        push = push if isinstance(push, dict) else {}
        out: dict[str, Any] = {"base_commit": _commit(rec.get("base_commit")) or self._base,
                               "workspace_note": str(end.get("note") or rec.get("error") or
                                                     "")[:protocol.MAX_LINE]}
        if end:
            out.update(head_commit=_commit(end.get("commit")),
                       files_changed=_count(end.get("files"), -1),
                       lines_added=_count(end.get("added")),
                       lines_removed=_count(end.get("removed")))
        out["push"] = push_text(push)
        return out


class NoWorkspace:
    """A job without a workspace: nothing to say about one."""

    def started(self) -> dict[str, str]:
        return {}

    def base_commit(self) -> str:
        return ""

    def failure(self) -> str:
        return ""

    def done(self) -> dict[str, Any]:
        return {}


NO_WORKSPACE = NoWorkspace()


def workspace_of(job_dir: Path, meta: dict[str, Any] | None = None) -> JobWorkspace | NoWorkspace:
    """The workspace of the job in `job_dir` as its meta.json planned it (`meta`: as the
    agent laid it out, not yet written; NO_WORKSPACE without one, or without a readable
    meta.json)."""
    try:
        ws = (meta if meta is not None else
              json.loads((job_dir / layout.META).read_text())).get("workspace")
    except (OSError, ValueError, AttributeError):
        return NO_WORKSPACE
    return JobWorkspace(job_dir, ws) if isinstance(ws, dict) and ws.get("record") else NO_WORKSPACE


def push_text(push: dict[str, Any]) -> str:
    """"pushed", "failed: <why> (retrying)", or "" (nothing to push)."""
    state = push.get("state")
    if state == "pushed":
        return "pushed"
    if state == "failed":
        return f"failed: {push.get('error') or '?'} (retrying)"[:protocol.MAX_LINE]
    return ""


def _commit(value: Any) -> str:
    return value if gitref.is_commit(value) else ""


def _count(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= -1 \
        else default


class Worktrees:
    """The sweeper's runs and what the heartbeat says of them. `tick` never waits for it."""

    def __init__(self, cfg: Config) -> None:
        self.root = Path(cfg.agent.workspace_dir)
        self.keep = cfg.agent.workspace_keep
        self.jobs_dir = cfg.jobs_dir
        # often enough to keep `workspace_keep` and a push's first retry roughly on time
        self.every = max(0.5, min(SWEEP_EVERY, self.keep / 4, cfg.agent.push_retry / 2))
        self.proc: subprocess.Popen | None = None
        self.next_at = 0.0
        self.asked: set[str] = set()                  # discards the broker asked for
        self.given: set[str] = set()                  # ... handed to the running sweeper
        self.report: dict[str, dict[str, int]] = {"pushed": {}, "removed": {}}
        self.bytes, self.count = -1, 0

    def tick(self, now: float, held: set[str]) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                return
            self.proc = None
            self._collect()
        if now < self.next_at and not (self.asked - self.given):
            return
        self.next_at = now + self.every
        if not self.root.is_dir():
            self.bytes, self.count = 0, 0
            for job_id in self.asked:       # nothing was ever made here: nothing to remove
                self.report["removed"][job_id] = REPORT_BEATS
            self.asked.clear()
            return
        self.given = set(self.asked)
        # `--since`: when `held` was true. A job assigned after it is not in it, and its
        # wrapper may make its record before the sweeper's interpreter has even started
        argv = [sys.executable, "-m", "luzia.agents.sweep", str(self.root), str(self.keep),
                "--held", ",".join(sorted(held)), "--discard", ",".join(sorted(self.given)),
                "--since", repr(time.time())]
        try:
            with open(self.root / SWEEP_ERRORS, "ab") as errors:    # a crash's traceback
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=errors)
        except OSError as exc:
            log.warning("cannot start the workspace sweeper: %s", exc)

    def _collect(self) -> None:
        """What the sweeper that just ended found."""
        try:
            result = json.loads((self.root / SWEEP_RESULT).read_text())
        except (OSError, ValueError) as exc:
            log.warning("the workspace sweeper left no result (%s)", exc)
            return
        self.bytes = _count(result.get("bytes"), -1)
        self.count = _count(result.get("worktrees"))
        for key in ("pushed", "removed"):
            for job_id in result.get(key) or []:
                if isinstance(job_id, str) and protocol.JOB_ID_RE.match(job_id):
                    self.report[key][job_id] = REPORT_BEATS
        self.asked -= set(self.report["removed"]) & self.given
        for line in result.get("log") or []:
            log.info("workspaces: %s", line)

    def discard(self, job_ids: list[str]) -> None:
        """The broker asks (in every beat until we report it) to remove these workspaces."""
        self.asked.update(j for j in job_ids if j not in self.report["removed"])

    def beat(self) -> dict[str, Any]:
        """The heartbeat's workspace fields; each report goes out in REPORT_BEATS beats."""
        out: dict[str, Any] = {"workspace_bytes": self.bytes, "workspaces": self.count}
        for key, pending in self.report.items():
            out[key] = sorted(pending)[:protocol.MAX_LIST]
            for job_id in out[key]:
                pending[job_id] -= 1
                if not pending[job_id]:
                    del pending[job_id]
        return out

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            log.info("workspace sweeper %d still running; it finishes on its own", self.proc.pid)
