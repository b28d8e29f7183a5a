"""Runners start a job's wrapper: in a tmux session a person can attach to, or as a plain
process group. Both end the same way: the wrapper writes the job's exit_code file.

The worker owns the timing (SIGTERM, then SIGKILL after the grace) so its loop never
blocks; a runner only starts, answers "is it still there?", and removes what is left
(`kill`) when even SIGKILL to the command did not end the wrapper.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from typing import Protocol

import psutil

from luzia import layout
from luzia.agents.jobdir import JobDir
from luzia.config import Config

log = logging.getLogger(__name__)

SESSIONS_TTL = 0.2   # seconds a tmux session listing is reused (one tmux call per tick, not per job)
TERM, KILL = signal.SIGTERM, signal.SIGKILL


def wrapper_argv(job: JobDir, pty: bool) -> list[str]:
    """Our own interpreter and the job directory: never the task text."""
    return [sys.executable, "-m", "luzia.agents.wrap", str(job.path)] + (["--pty"] if pty else [])


session_name = layout.job_session


class Runner(Protocol):
    name: str

    def start(self, job: JobDir) -> str: ...
    def alive(self, job: JobDir) -> bool: ...
    def kill(self, job: JobDir) -> None: ...
    def reap(self, job: JobDir) -> None: ...
    def sessions(self) -> set[str]: ...


class SubprocessRunner:
    """The wrapper as a child in its own session (so it outlives the agent); no terminal."""

    name = "subprocess"

    def __init__(self, cfg: Config) -> None:
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, job: JobDir) -> str:
        proc = subprocess.Popen(
            wrapper_argv(job, pty=False), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        self.procs[job.id] = proc
        # a restarted agent finds the wrapper again by this pid (it is no longer our child)
        job.set_status(wrapper_pid=proc.pid, runner=self.name)
        return ""

    def alive(self, job: JobDir) -> bool:
        proc = self.procs.get(job.id)
        if proc is not None:
            return proc.poll() is None
        return wrapper_alive(job)

    def kill(self, job: JobDir) -> None:
        pid = self._wrapper_pid(job)
        if pid:
            _killpg(pid, KILL)

    def reap(self, job: JobDir) -> None:
        proc = self.procs.pop(job.id, None)
        if proc is not None:
            proc.poll()

    def sessions(self) -> set[str]:
        return set()

    def _wrapper_pid(self, job: JobDir) -> int:
        proc = self.procs.get(job.id)
        if proc is not None:
            return proc.pid
        return int(job.status().get("wrapper_pid") or 0) if wrapper_alive(job) else 0


class TmuxRunner:
    """One detached session `luzia-<job id>` per job on a private tmux server (`tmux -L`)."""

    name = "tmux"

    def __init__(self, cfg: Config) -> None:
        import libtmux
        self.socket = cfg.agent.tmux_socket
        self.server = libtmux.Server(socket_name=self.socket)
        self._listed: set[str] = set()
        self._listed_at = -1e9

    def start(self, job: JobDir) -> str:
        session = session_name(job.id)
        job.set_status(runner=self.name, session=session)
        # the session's command holds only our interpreter and the job dir (shell-quoted)
        self._tmux("new-session", "-d", "-s", session, "-x", "200", "-y", "50",
                   shlex.join(wrapper_argv(job, pty=True)))
        self._listed_at = -1e9
        return session

    def alive(self, job: JobDir) -> bool:
        return session_name(job.id) in self.sessions()

    def kill(self, job: JobDir) -> None:
        out = self.server.cmd("kill-session", "-t", f"={session_name(job.id)}")
        self._listed_at = -1e9
        if out.returncode:
            log.debug("job %s: tmux kill-session: %s", job.id, " ".join(out.stderr))

    def reap(self, job: JobDir) -> None:
        pass

    def sessions(self) -> set[str]:
        """Names of this server's `luzia-*` sessions (empty when the server is not running)."""
        now = time.monotonic()
        if now - self._listed_at > SESSIONS_TTL:
            out = self.server.cmd("list-sessions", "-F", "#{session_name}")
            self._listed = {s for s in out.stdout if s.startswith(layout.SESSION_PREFIX)}
            self._listed_at = now
        return self._listed

    def _tmux(self, *args: str) -> None:
        out = self.server.cmd(*args)
        if out.returncode:
            raise RuntimeError(f"tmux {args[0]} failed: {' '.join(out.stderr)}")


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


def signal_job(job: JobDir, sig: int) -> bool:
    """Signal the command's process group; False while its pid is not known (or it is gone)."""
    pid = job.pid()
    if not pid:
        return False
    return _killpg(pid, sig)


def wrapper_alive(job: JobDir) -> bool:
    """Is the wrapper recorded in status.json still running this job? (pids get reused)"""
    pid = int(job.status().get("wrapper_pid") or 0)
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        return (proc.status() != psutil.STATUS_ZOMBIE
                and str(job.path) in proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _killpg(pid: int, sig: int) -> bool:
    try:
        os.killpg(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def rediscover_wrapper(job: JobDir) -> bool:
    """Find a wrapper whose pid was never recorded (its agent died right after starting it)
    by its command line, and record it; False if no process runs this job."""
    needle = str(job.path)
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if "luzia.agents.wrap" in cmdline and needle in cmdline:
            job.set_status(wrapper_pid=proc.info["pid"])
            return wrapper_alive(job)
    return False
