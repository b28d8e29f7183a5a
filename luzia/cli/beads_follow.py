"""`luzia import beads PATH --follow`: the older async dispatcher's Beads queue as a live
source (it polled `.beads/issues.jsonl` every 2 s and wrote the status back).

Each round (every --interval seconds) reads the issues file and asks the broker about each
issue's job (jobs.exist, then jobs.get for the few whose end is written back):
- an open or blocked issue without a job is submitted — idempotently: its job id is made
  from the issue's id, as by the one-shot import, so a restart submits nothing twice;
- an issue whose job runs goes `in_progress`;
- one whose job completed goes `closed`, with `closed_at` and a `close_reason` naming the
  job and its end;
- one whose job failed (or was killed, or rejected) is left `open`, with a line in its
  `notes` naming the job, its end and `luzia retry ID`, which runs it again;
- an issue found open again after its job completed — edited after the job ended — is
  reopened: a new job, whose id is made from the issue's and the ended job's ids.
Writes go through luzia/beadsfile.py (atomic, merged by id under a lock, other fields kept
byte for byte). A person's own changes win: a closed issue is never reopened by Luzia, an
issue closed while its job runs is left closed.

It runs until SIGTERM or Ctrl-C, as a supervisor program of its own (docs/DEPLOY.md); the
broker may come and go meanwhile. Lines on stdout say what it did, one per change.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from luzia.beadsfile import BeadsFile
from luzia.cli.control import load_config
from luzia.cli.oldqueues import BEADS_TAKEN, Item, bead, place, when
from luzia.errors import BrokerUnreachable, LuziaError
from luzia.states import TERMINAL_NAMES, exit_text

RUNNING = ("assigned", "running", "lost", "paused")   # begun: the issue is in_progress
EXIST_BATCH = 10_000        # ids per jobs.exist (the broker's limit)
REOPENS_MAX = 100           # generations followed for one issue in one round


@dataclass
class Issue:
    """One line of the file as the follower needs it."""

    item: Item
    entry: dict[str, Any]
    job: str = ""           # the job that stands for it now
    state: str | None = None   # that job's state at the broker; None: the broker has none

    @property
    def status(self) -> str:
        return str(self.entry.get("status") or "open").lower()


@dataclass
class Follower:
    source: Path
    project: str | None
    interval: float = 2.0
    dry_run: bool = False
    cfg: Any = field(default_factory=load_config)
    current: dict[str, str] = field(default_factory=dict)   # issue id -> the job for it
    warned: set[str] = field(default_factory=set)
    down: bool = False
    stop: bool = False

    def run(self) -> None:
        """Rounds until SIGTERM/SIGINT (or one round with --dry-run)."""
        from luzia.client import Control
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        self.say(f"following {self.source} every {self.interval:g}s (project "
                 f"{self.project or 'from each issue'})" + ("; dry run" if self.dry_run else ""))
        with Control(self.cfg) as ctl:
            while not self.stop:
                try:
                    self.round(ctl)
                    if self.down:
                        self.say("broker reachable again")
                    self.down = False
                except BrokerUnreachable as exc:
                    if not self.down:
                        self.say(f"{exc}; trying again every {self.interval:g}s")
                    self.down = True
                    ctl.close()
                if self.dry_run:
                    return
                deadline = time.monotonic() + self.interval
                while not self.stop and time.monotonic() < deadline:
                    time.sleep(min(0.2, self.interval))   # the poll period; a signal ends it early
        self.say("stopped")

    def _stop(self, signum: int, frame: Any) -> None:
        self.stop = True

    def say(self, text: str) -> None:
        click.echo(f"{datetime.now().strftime('%Y-%m-%d %H:%M:%S')} {text}")

    # one round ----------------------------------------------------------------------
    def round(self, ctl: Any) -> None:
        issues = self.issues()
        self.resolve(ctl, issues)
        changes: dict[str, dict[str, Any]] = {}
        for issue in issues.values():
            change = self.act(ctl, issue)
            if change:
                changes[issue.item.key] = change
        if changes and not self.dry_run:
            self.file.update(changes)

    @property
    def file(self) -> BeadsFile:
        return BeadsFile(self.source)

    def issues(self) -> dict[str, Issue]:
        """The file's issues by id (a repeated id: its last line), each with its job id."""
        out: dict[str, Issue] = {}
        try:
            lines = self.file.read()
        except OSError as exc:
            self.say(f"cannot read {self.source}: {exc.strerror or exc}")
            return out
        for issue_id, raw in lines:
            if issue_id is None:
                continue
            entry = json.loads(raw.decode("utf-8"))
            item = bead(entry)
            out[issue_id] = Issue(item, entry, self.current.get(issue_id, item.job_id))
        place([i.item for i in out.values()], self.cfg.projects, self.project)
        return out

    def resolve(self, ctl: Any, issues: dict[str, Issue]) -> None:
        """Each issue's job and its state; an issue edited open after its job completed
        moves on to the job of its next generation."""
        pending = list(issues.values())
        for _ in range(REOPENS_MAX):
            states = self.exist(ctl, [i.job for i in pending])
            for issue in pending:
                issue.state = states.get(issue.job)
            pending = [i for i in pending if self.reopened(ctl, i)]
            if not pending:
                break
            for issue in pending:
                issue.job = issue.item.job_id_after(issue.job)
        for key, issue in issues.items():
            self.current[key] = issue.job

    def reopened(self, ctl: Any, issue: Issue) -> bool:
        if issue.state != "completed" or issue.status not in BEADS_TAKEN:
            return False
        edited = when(issue.entry.get("updated_at"))
        job = ctl.call("jobs.get", id=issue.job)
        finished = _number(job.get("finished_at")) if isinstance(job, dict) else None
        return edited is not None and finished is not None and edited > finished

    def exist(self, ctl: Any, ids: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for at in range(0, len(ids), EXIST_BATCH):
            answer = ctl.call("jobs.exist", ids=ids[at:at + EXIST_BATCH])
            if isinstance(answer, dict):
                found.update({k: v for k, v in answer.items() if isinstance(v, str)})
        return found

    def act(self, ctl: Any, issue: Issue) -> dict[str, Any]:
        """What to do about one issue: submit its job, or the fields to write back."""
        key, status, state = issue.item.key, issue.status, issue.state
        if state is None:
            if status in BEADS_TAKEN:
                self.submit(issue)
            return {}
        if state in RUNNING and status in BEADS_TAKEN:
            self.changed(key, f"in_progress (job {issue.job} {state})")
            return {"status": "in_progress", "updated_at": _now()}
        if state not in TERMINAL_NAMES or status == "closed":
            return {}
        job = ctl.call("jobs.get", id=issue.job)
        job = job if isinstance(job, dict) else {}
        code = job.get("exit_code")
        ended = exit_text(code) if isinstance(code, int) else str(job.get("reason") or state)
        if state == "completed":
            self.changed(key, f"closed (job {issue.job} completed, {ended})")
            return {"status": "closed", "closed_at": _now(), "updated_at": _now(),
                    "close_reason": f"luzia job {issue.job} completed ({ended})"}
        notes = str(issue.entry.get("notes") or "")
        mark = f"luzia job {issue.job} attempt {job.get('attempt', 0)} {state}"
        if mark in notes and status != "in_progress":
            return {}
        why = str(job.get("reason") or ended)
        self.changed(key, f"left open (job {issue.job} {state}: {why})")
        change = {"status": "open", "updated_at": _now()}
        if mark not in notes:
            line = f"{mark} ({why}) at {_now()}; `luzia retry {issue.job}` runs it again"
            change["notes"] = f"{notes}\n{line}" if notes else line
        return change

    def changed(self, key: str, what: str) -> None:
        self.say(f"{key}: {'would go ' if self.dry_run else ''}{what}")

    def submit(self, issue: Issue) -> None:
        from luzia import client, protocol
        item = issue.item
        if item.skip:
            if item.key not in self.warned:
                self.warned.add(item.key)
                self.say(f"{item.key}: not taken: {item.skip}")
            return
        try:
            spec = client.build(item.project, item.task, cfg=self.cfg, priority=item.priority,
                                type=item.type or None, metadata=item.metadata)
        except LuziaError as exc:
            if item.key not in self.warned:
                self.warned.add(item.key)
                self.say(f"{item.key}: not taken: {exc}")
            return
        spec = protocol.replace(spec, id=issue.job)
        again = " (reopened)" if issue.job != item.job_id else ""
        if self.dry_run:
            self.say(f"{item.key}: would take{again} -> job {spec.id} ({spec.project})")
            return
        client.send(spec, self.cfg)
        issue.state = "pending"
        self.say(f"{item.key}: taken{again} -> job {spec.id} ({spec.project})")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
