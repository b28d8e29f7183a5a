"""Runners start a job's wrapper: in a tmux session a person can attach to, or as a plain
process group. Both end the same way: the wrapper writes the job's exit_code file.

The worker owns the timing (SIGTERM, then SIGKILL after the grace) so its loop never
blocks; a runner only starts, answers "is it still there?", shows what a person attached
would see (`pane`), and removes what is left (`kill`) when even SIGKILL to the command did
not end the wrapper.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from typing import Protocol

from luzia import layout
from luzia.agents import processes
from luzia.agents.attention import Screen
from luzia.agents.jobdir import JobDir
from luzia.agents.tmuxctl import TmuxController, TmuxError
from luzia.config import Config

log = logging.getLogger(__name__)

SESSIONS_TTL = 0.2   # seconds a tmux session listing is reused (one tmux call per tick, not per job)


def wrapper_argv(job: JobDir, pty: bool) -> list[str]:
    """Our own interpreter and the job directory: never the task text."""
    return [sys.executable, "-m", processes.WRAPPER_MODULE, str(job.path)] + \
        (["--pty"] if pty else [])


class Runner(Protocol):
    name: str

    def start(self, job: JobDir) -> str: ...
    def alive(self, job: JobDir) -> bool: ...
    def kill(self, job: JobDir) -> None: ...
    def reap(self, job: JobDir) -> None: ...
    def pane(self, job: JobDir) -> str | None: ...
    def screen(self, job: JobDir) -> Screen | None: ...


def session_screen(tmux: TmuxController, session: str) -> Screen | None:
    """What `session`'s pane shows, for the attention watch; None without one."""
    if not session:
        return None
    try:
        lines, answered = tmux.screen(session, layout.ANSWERED_OPTION)
    except TmuxError:
        return None
    return Screen(lines, answered)


class SubprocessRunner:
    """The wrapper as a child in its own session (so it outlives the agent); no terminal."""

    name = "subprocess"

    def __init__(self, cfg: Config) -> None:
        self.wrappers = processes.Wrappers()

    def start(self, job: JobDir) -> str:
        proc = subprocess.Popen(
            wrapper_argv(job, pty=False), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        self.wrappers.add(job, proc)
        # a restarted agent finds the wrapper again by this pid (it is no longer our child);
        # it runs now, so a full disk here must not make it "never started" (a second run)
        try:
            job.set_status(wrapper_pid=proc.pid, runner=self.name)
        except OSError as exc:
            log.warning("job %s: started, but its status.json: %s", job.id, exc.strerror or exc)
        return ""

    def alive(self, job: JobDir) -> bool:
        return self.wrappers.alive(job)

    def kill(self, job: JobDir) -> None:
        pid = self.wrappers.pid(job)
        if pid:
            processes.killpg(pid, processes.KILL)

    def reap(self, job: JobDir) -> None:
        self.wrappers.reap(job)

    def pane(self, job: JobDir) -> str | None:
        return None

    def screen(self, job: JobDir) -> Screen | None:
        return None     # no terminal: nothing can wait for a person's keys


class TmuxRunner:
    """One detached session `luzia-<job id>` per job on a private tmux server (`tmux -L`),
    reached through agent.tmux_prefix (e.g. into a container whose paths match ours)."""

    name = "tmux"

    def __init__(self, cfg: Config) -> None:
        self.socket = cfg.agent.tmux_socket
        self.tmux = TmuxController(self.socket, cfg.tmux_prefix)
        self._listed: set[str] | None = set()
        self._listed_at = -1e9

    def start(self, job: JobDir) -> str:
        session = layout.job_session(job.id)
        job.set_status(runner=self.name, session=session, socket=self.socket)
        # the session's command holds only our interpreter and the job dir (shell-quoted)
        self.tmux.start_session(session, wrapper_argv(job, pty=True), cwd=_cwd(job))
        self._listed_at = -1e9
        return session

    def alive(self, job: JobDir) -> bool:
        """Its session is listed, or tmux could not say (the worker looks again next tick;
        the wrapper's exit_code file is what ends a job)."""
        listed = self._sessions()
        return listed is None or layout.job_session(job.id) in listed

    def kill(self, job: JobDir) -> None:
        self._listed_at = -1e9
        try:
            self.tmux.kill_session(layout.job_session(job.id))
        except TmuxError as exc:
            log.warning("job %s: tmux kill-session: %s", job.id, exc)

    def reap(self, job: JobDir) -> None:
        pass

    def pane(self, job: JobDir) -> str | None:
        """The job's pane as text, or None when it has none (gone, or tmux failed)."""
        try:
            return "\n".join(self.tmux.capture(layout.job_session(job.id)))
        except TmuxError:
            return None

    def screen(self, job: JobDir) -> Screen | None:
        return session_screen(self.tmux, layout.job_session(job.id))

    def _sessions(self) -> set[str] | None:
        """This server's `luzia-*` sessions (empty when no server runs; None: unknown)."""
        now = time.monotonic()
        if now - self._listed_at > SESSIONS_TTL:
            self._listed = self.tmux.sessions(layout.SESSION_PREFIX)
            self._listed_at = now
            if self._listed is None:
                log.warning("tmux could not list its sessions; taking the jobs as alive")
        return self._listed


def _cwd(job: JobDir) -> str:
    """Where the session starts (a new window opens there): the job's work directory."""
    try:
        cwd = str(job.meta().get("cwd") or "")
    except (OSError, ValueError):
        return ""
    return cwd if os.path.isdir(cwd) else ""


def make_runner(cfg: Config) -> Runner:
    kind = cfg.agent.runner
    if kind == "auto":
        kind = "tmux" if shutil.which("tmux") else "subprocess"
    if kind == "tmux":
        return TmuxRunner(cfg)
    if kind == "interactive":
        from luzia.agents.interactive import InteractiveRunner
        return InteractiveRunner(cfg)
    return SubprocessRunner(cfg)
