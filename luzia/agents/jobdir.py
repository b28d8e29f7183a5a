"""A job's directory on the agent's host, in the seeds' layout:
meta.json, status.json, output.log, progress.md, pid, exit_code, task.txt.

`<jobs_dir>/<job id>/`; the id was checked against JOB_ID_RE by the protocol, so it is a
plain directory name. The worker writes meta.json and status.json, the wrapper writes pid,
output.log and exit_code, the job's command writes progress.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from luzia import layout, protocol
from luzia.agentconf import AgentCommand
from luzia.agents import worktrees
from luzia.agents.jobstatus import AttemptState, JobStatus
from luzia.config import Config
from luzia.text import strip_terminal

PERCENT_RE = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*%")
ATTEMPT_MARK = "--- luzia: attempt "    # output.log's line between two attempts' output


def write_atomic(path: Path, data: bytes | str, sync: bool = True, mode: int = 0o644) -> None:
    """Write, fsync, rename: a reader sees the old content or the new one, never half."""
    tmp = path.with_name(layout.atomic_tmp_name(path.name))
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        if sync:
            os.fsync(f.fileno())
    os.replace(tmp, path)


class JobDir:
    """One job's directory: creation for an attempt, and everything the worker reads back."""

    def __init__(self, root: Path, job_id: str) -> None:
        self.id = job_id
        self.path = root / job_id
        self.output = self.path / layout.OUTPUT
        self.progress_file = self.path / layout.PROGRESS
        self.exit_file = self.path / layout.EXIT_CODE
        self.pid_file = self.path / layout.PID

    # creation ------------------------------------------------------------------
    def create(self, cfg: Config, job: protocol.JobSpec, attempt: int, account: str = "",
               resume: str = "") -> None:
        """Lay out the directory for this attempt; the wrapper reads meta.json to run it.
        `account` names the [accounts.*] whose environment it gets; `resume` a session of
        the agent's to resume (when this host holds it under that account, docs/AGENTS.md)."""
        if self.path.exists():                     # a new attempt starts clean
            for name in layout.ATTEMPT_FILES:
                (self.path / name).unlink(missing_ok=True)
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path / layout.TASK, job.task)
        command = command_for(cfg, job.type)
        session = resume if resume and self.holds_session(resume, account) else ""
        with open(self.output, "ab") as f:
            if f.tell():                           # earlier attempts' output stays, marked off
                f.write(f"\n{ATTEMPT_MARK}{attempt} ---\n".encode())
            if resume and command.resume_argv:
                f.write((f"luzia: resuming the agent's session {resume}\n" if session else
                         f"luzia: session {resume} is not on this host under account "
                         f"{account or '(none)'}: starting the task afresh\n").encode())
        self.progress_file.touch()
        ws = worktrees.plan(cfg, job, attempt)      # None: no repo, no workspace
        if ws and session and command.resume_argv:  # the resumed agent remembers its work
            ws["resume"] = True
        workdir = ws["path"] if ws else job.workdir or str(self.path)
        argv = build_argv(cfg, job, self.path, workdir, session)
        env = {"LUZIA_JOB_ID": job.id, "LUZIA_JOB_DIR": str(self.path),
               "LUZIA_PROJECT": job.project, "LUZIA_ATTEMPT": str(attempt),
               "LUZIA_PROGRESS_FILE": str(self.progress_file)}
        if account in cfg.accounts:
            env.update(cfg.accounts[account].env)
            env["LUZIA_ACCOUNT"] = account
        meta = {"job": protocol.to_plain(job), "attempt": attempt, "argv": argv, "cwd": workdir,
                "env": env, "created_at": time.time(), "host": cfg.agent.name,
                "git_snapshots": cfg.agent.git_snapshots and not ws, "workspace": ws,
                "format": command.format, "account": account, "resumed": session}
        write_atomic(self.path / layout.META, json.dumps(meta, indent=1))
        # the agent's environment now, not the tmux server's (issue 17); it may hold secrets
        write_atomic(self.path / layout.ENV, json.dumps(agent_environment()), mode=0o600)
        # room for the wrapper's pid and exit code, taken now: on a disk that fills while the
        # job runs they are written in place and renamed (a job that ran is never "vanished")
        for name in (layout.PID, layout.EXIT_CODE):
            _reserve(self.path / layout.atomic_tmp_name(name))
        self.set_status(state=AttemptState.RUNNING, attempt=attempt, acked=False,
                        started_at=time.time())

    # reading ------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return json.loads((self.path / layout.META).read_text())

    def status(self) -> JobStatus:
        """status.json as its record (the empty record when there is none)."""
        try:
            return JobStatus.from_json(json.loads((self.path / layout.STATUS).read_text()))
        except (OSError, ValueError):
            return JobStatus()

    def set_status(self, sync: bool = True, **fields: Any) -> None:
        """Change `fields` of status.json, each a JobStatus field (sync=False for frequent,
        unimportant updates)."""
        status = self.status().with_fields(**fields, updated_at=time.time())
        write_atomic(self.path / layout.STATUS, json.dumps(status.to_json()), sync=sync)

    def exit_code(self) -> int | None:
        try:
            return int(self.exit_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def pid(self) -> int:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return 0

    def progress(self) -> tuple[float, str]:
        """(percent or -1, message) from the first line of progress.md that has one."""
        try:
            text = self.progress_file.read_text(errors="replace")
        except OSError:
            return -1.0, ""
        for line in text.splitlines():
            m = PERCENT_RE.search(line)
            if m:
                pct = min(100.0, float(m.group(1)))
                message = (line[:m.start()] + line[m.end():]).strip(" -:")
                return pct, strip_terminal(message)[:protocol.MAX_LINE]
        first = text.strip().splitlines()[:1]
        return -1.0, strip_terminal(first[0])[:protocol.MAX_LINE] if first else ""

    def tail(self, lines: int) -> list[str]:
        try:
            with open(self.output, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 64 * 1024))
                data = f.read().decode(errors="replace")
        except OSError:
            return []
        out = [ln[:protocol.MAX_LINE] for ln in strip_terminal(data).split("\n")]
        while out and not out[-1].strip():
            out.pop()
        return out[-lines:]

    def read_log(self, offset: int, limit: int) -> tuple[bytes, int]:
        """Up to `limit` bytes of output.log from `offset`, and the log's size."""
        with open(self.output, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(min(offset, size))
            return f.read(limit), size

    # the agent's conversations (docs/AGENTS.md) ----------------------------------------
    def sessions(self) -> dict[str, str]:
        """The agent's session ids this host holds for the job, each with its account."""
        try:
            data = json.loads((self.path / layout.SESSIONS).read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def holds_session(self, session_id: str, account: str) -> bool:
        held = self.sessions()
        return session_id in held and held[session_id] == account

    def keep_session(self, session_id: str, account: str) -> None:
        """Remember that an attempt here made `session_id` under `account` (to resume it)."""
        held = self.sessions()
        if session_id and held.get(session_id) != account:
            held[session_id] = account
            write_atomic(self.path / layout.SESSIONS, json.dumps(held), sync=False)

    def signature(self) -> tuple[int, float, float]:
        """Changes when output or progress change (cheap: sizes and mtimes)."""
        try:
            out, prog = self.output.stat(), self.progress_file.stat()
            return out.st_size, out.st_mtime, prog.st_mtime
        except OSError:
            return 0, 0.0, 0.0


def _reserve(path: Path) -> None:
    """A file of RESERVE bytes whose blocks are allocated (written and synced)."""
    with open(path, "wb") as f:
        f.write(b" " * layout.RESERVE)
        f.flush()
        os.fsync(f.fileno())


def agent_environment() -> dict[str, str]:
    """What a job inherits from its agent: the agent's environment less the variables of
    a tmux pane the agent itself may run in (a job's pane sets its own)."""
    return {k: v for k, v in os.environ.items() if k not in layout.PANE_ENV}


def command_for(cfg: Config, kind: str) -> AgentCommand:
    """The command of a task type: `[agent.commands]`, else `[agent] command`."""
    command = cfg.agent.commands.get(kind)
    if command is not None:
        return command
    return AgentCommand(argv=cfg.agent.command, format=cfg.agent.format,
                        resume_argv=cfg.agent.resume_argv)


def build_argv(cfg: Config, job: protocol.JobSpec, job_dir: Path, workdir: str,
               session_id: str = "") -> list[str]:
    """The command for this job with placeholders replaced; the task is one argument. With
    `session_id`, the command's resume_argv (when it has one) with {session_id} too."""
    command = command_for(cfg, job.type)
    template = command.argv
    if session_id and command.resume_argv:
        template = command.resume_argv
    values = {"{task}": job.task, "{task_file}": str(job_dir / layout.TASK), "{job_id}": job.id,
              "{project}": job.project, "{job_dir}": str(job_dir), "{workdir}": workdir,
              "{session_id}": session_id}
    out = []
    for arg in template:
        if arg in values:             # whole-argument placeholder: no further substitution
            out.append(values[arg])
            continue
        for key, value in values.items():
            if key != "{task}":
                arg = arg.replace(key, value)
        out.append(arg.replace("{task}", job.task))
    return out


def prune(root: Path, keep: int, active: set[str]) -> int:
    """Remove the oldest finished job directories beyond `keep` (never one in `active`)."""
    try:
        dirs = [d for d in root.iterdir() if d.is_dir() and d.name not in active
                and (d / layout.EXIT_CODE).exists()]
    except OSError:
        return 0
    if len(dirs) <= keep:
        return 0
    dirs.sort(key=_mtime)
    victims = dirs[:len(dirs) - keep]
    for d in victims:
        shutil.rmtree(d, ignore_errors=True)
    return len(victims)


def _mtime(path: Path) -> float:
    try:
        return (path / layout.EXIT_CODE).stat().st_mtime
    except OSError:   # removed meanwhile: first in line
        return 0.0
