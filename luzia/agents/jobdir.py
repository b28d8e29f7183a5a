"""A job's directory on the agent's host: meta.json (with the attempt's first record),
`process` (the command's pid and exit status), output.log, and as needed status.json (the
record once it changed), progress.md and task.txt (for a command that names it).

`<jobs_dir>/<job id>/`; the id was checked against JOB_ID_RE by the protocol, so it is a
plain directory name. The worker writes meta.json and status.json, the job's tracker (the
spawner or the wrapper) writes output.log and the fields of `process`, the job's command
writes progress.md. A directory laid out by an earlier release (status.json from the
start, `pid` and `exit_code` files) reads the same (DECISIONS: fewer files a job).
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
from luzia.config import Config
from luzia.jobstatus import AttemptState, JobStatus, attempt_record, read_exit_code, read_pid
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
        self.process_file = self.path / layout.PROCESS
        self.written: JobStatus | None = None   # status.json as this object last wrote it
        self.fresh: dict[str, Any] = {}         # a new attempt's fields, not yet written
        self.laid_out: dict[str, Any] = {}      # meta.json as this object wrote it
        self.record_in = ""                     # the file that holds the record (META, STATUS)

    # creation ------------------------------------------------------------------
    def create(self, cfg: Config, job: protocol.JobSpec, attempt: int, account: str = "",
               resume: str = "") -> None:
        """Lay out the directory for this attempt; its tracker reads meta.json to run it.
        `account` names the [accounts.*] whose environment it gets; `resume` a session of
        the agent's to resume (when this host holds it under that account, docs/AGENTS.md).
        Few files, none synced, none renamed: until its exit code the directory only mirrors
        the broker's record (a power cut that loses it also ended the command, and what the
        agent no longer holds the broker requeues), and every file made here is paid for
        each job (DECISIONS: the spawner; fewer files a job). meta.json is written by the
        runner's first note (set_status), with the attempt's record in it. The command
        writes progress.md when it has progress to tell, its tracker output.log (for_wrapper:
        what a wrapper needs more)."""
        command = command_for(cfg, job.type)
        session = resume if resume and self.holds_session(resume, account) else ""
        try:
            self.path.mkdir(parents=True)
        except FileExistsError:                    # a new attempt starts clean
            for name in layout.ATTEMPT_FILES:
                (self.path / name).unlink(missing_ok=True)
            if _size(self.output):                 # earlier attempts' output stays, marked off
                with open(self.output, "ab") as f:
                    f.write(f"\n{ATTEMPT_MARK}{attempt} ---\n".encode())
        if resume and command.resume_argv:
            with open(self.output, "ab") as f:
                f.write((f"luzia: resuming the agent's session {resume}\n" if session else
                         f"luzia: session {resume} is not on this host under account "
                         f"{account or '(none)'}: starting the task afresh\n").encode())
        ws = worktrees.plan(cfg, job, attempt)      # None: no repo, no workspace
        if ws and session and command.resume_argv:  # the resumed agent remembers its work
            ws["resume"] = True
        workdir = ws["path"] if ws else job.workdir or str(self.path)
        argv = build_argv(cfg, job, self.path, workdir, session)
        task_file = str(self.path / layout.TASK)
        if any(task_file in arg for arg in argv):      # only a command that reads it ({task_file})
            _put(self.path / layout.TASK, job.task.encode())
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
        self.laid_out = meta
        # room for the tracker's pid and exit code, taken now: on a disk that fills while the
        # job runs they are written in place (a job that ran is never "vanished"); a new
        # attempt blanks the room it has, not a new file
        fd = os.open(self.process_file, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, b" " * layout.PROCESS_BYTES)
        finally:
            os.close(fd)
        # meta.json and the attempt's record go out with the runner's first note
        # (set_status), which every runner makes before its tracker may run the command
        self.written, self.record_in = None, ""
        self.fresh = {"state": AttemptState.RUNNING, "attempt": attempt, "acked": False,
                      "started_at": time.time()}

    def for_wrapper(self) -> None:
        """What a wrapper (wrap.py, repl.py) expects laid out besides meta.json: env.json, the
        agent's environment now, since a wrapper started in a tmux pane has the server's
        (issue 17); 0600, it may hold secrets, the wrapper removes it once read. The spawner
        needs none: it is the agent's child."""
        write_atomic(self.path / layout.ENV, json.dumps(agent_environment()), sync=False,
                     mode=0o600)

    # reading ------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        """meta.json (as this object wrote it, when it did: not read back)."""
        return self.laid_out or json.loads((self.path / layout.META).read_text())

    def status(self) -> JobStatus:
        """The attempt's record: status.json once it changed after the start (and in an
        earlier release's directory), else meta.json's first record; the empty record when
        there is none."""
        record, self.record_in = attempt_record(self.path)
        return JobStatus.from_json(record)

    def set_status(self, sync: bool = False, **fields: Any) -> None:
        """Change `fields` of the record, each a JobStatus field. An attempt's first note
        writes meta.json with the record in it (one new file, not two); a later change
        writes status.json. Not synced by default: a process that dies leaves it in the page
        cache for the next agent, and after a power cut the broker, not this file, has the
        job (what the agent no longer holds is requeued); the exit code, the one thing only
        this host knows, is synced by its tracker."""
        base = JobStatus() if self.fresh else self.written or self.status()
        status = base.with_fields(**{**self.fresh, **fields}, updated_at=time.time())
        if self.fresh:
            data = json.dumps({**self.laid_out, "status": status.to_json()}, indent=1)
            _put(self.path / layout.META, data.encode(), sync)
            self.record_in = layout.META
        else:
            write_atomic(self.path / layout.STATUS, json.dumps(status.to_json()), sync=sync)
            self.record_in = layout.STATUS
        self.written, self.fresh = status, {}

    def acknowledged(self) -> None:
        """The record says `acked`: its file rewritten in place, not through a new file and a
        rename (one job's last write, paid for every job). A reader that meets it half
        written, or an agent killed in the middle, reads no record, which for a job whose
        end the broker has is right: re-adoption skips it as it skips an acknowledged one."""
        base = self.written or self.status()
        status = base.with_fields(acked=True, updated_at=time.time())
        if self.record_in == layout.META:
            meta = {k: v for k, v in self.meta().items() if k != "status"}
            data = json.dumps({**meta, "status": status.to_json()}, indent=1).encode()
        else:
            data = json.dumps(status.to_json()).encode()
        fd = os.open(self.path / (self.record_in or layout.STATUS), os.O_WRONLY | os.O_CREAT,
                     0o644)
        try:
            os.write(fd, data)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)
        self.written = status

    def exit_code(self) -> int | None:
        """The exit status its tracker recorded; None while the command runs."""
        return read_exit_code(self.path)

    def pid(self) -> int:
        """The command's pid as its tracker recorded it (a workspace's setup's while that
        runs); 0 when not known."""
        return read_pid(self.path)

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
        """Changes when output or progress change (cheap: sizes and mtimes; either file may
        not be there yet)."""
        try:
            out = self.output.stat()
            size, mtime = out.st_size, out.st_mtime
        except OSError:
            size, mtime = 0, 0.0
        try:
            return size, mtime, self.progress_file.stat().st_mtime
        except OSError:
            return size, mtime, 0.0


def _put(path: Path, data: bytes, sync: bool = False) -> None:
    """Write a file in one go, not synced unless asked."""
    with open(path, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


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
                and read_exit_code(d) is not None]
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
    """When it ended: its exit status's write (`process`, or an earlier release's file)."""
    for name in (layout.PROCESS, layout.EXIT_CODE):
        try:
            return (path / name).stat().st_mtime
        except OSError:
            continue
    return 0.0        # removed meanwhile: first in line
