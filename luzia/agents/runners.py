"""Runners start a job's wrapper: in a tmux session a person can attach to, or as a plain
process group. Both end the same way: the wrapper writes the job's exit_code file."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys

from luzia.agents.jobdir import JobDir
from luzia.config import Config

log = logging.getLogger(__name__)

SESSION_PREFIX = "luzia-"


def wrapper_argv(job: JobDir, pty: bool) -> list[str]:
    return [sys.executable, "-m", "luzia.agents.wrap", str(job.path)] + (["--pty"] if pty else [])


class SubprocessRunner:
    name = "subprocess"

    def __init__(self, cfg: Config) -> None:
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, job: JobDir) -> str:
        self.procs[job.id] = subprocess.Popen(
            wrapper_argv(job, pty=False), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        return ""

    def alive(self, job: JobDir) -> bool:
        proc = self.procs.get(job.id)
        if proc is not None:
            return proc.poll() is None
        pid = job.pid()       # re-adopted after an agent restart: not our child
        return bool(pid) and _pid_alive(pid)

    def reap(self, job: JobDir) -> None:
        proc = self.procs.pop(job.id, None)
        if proc is not None:
            proc.poll()

    def sessions(self) -> set[str]:
        return set()


class TmuxRunner:
    name = "tmux"

    def __init__(self, cfg: Config) -> None:
        import libtmux
        self.socket = cfg.agent.tmux_socket
        self.server = libtmux.Server(socket_name=self.socket)

    def start(self, job: JobDir) -> str:
        session = SESSION_PREFIX + job.id
        self._tmux("new-session", "-d", "-s", session, "-x", "200", "-y", "50",
                   shlex.join(wrapper_argv(job, pty=True)))
        return session

    def alive(self, job: JobDir) -> bool:
        return SESSION_PREFIX + job.id in self.sessions()

    def reap(self, job: JobDir) -> None:
        pass

    def sessions(self) -> set[str]:
        out = self.server.cmd("list-sessions", "-F", "#{session_name}")
        return {s for s in out.stdout if s.startswith(SESSION_PREFIX)}

    def _tmux(self, *args: str) -> None:
        out = self.server.cmd(*args)
        if out.returncode:
            raise RuntimeError(f"tmux {args[0]} failed: {' '.join(out.stderr)}")


def make_runner(cfg: Config):
    kind = cfg.agent.runner
    if kind == "auto":
        kind = "tmux" if shutil.which("tmux") else "subprocess"
    if kind == "tmux":
        return TmuxRunner(cfg)
    return SubprocessRunner(cfg)


def signal_job(job: JobDir, sig: int) -> bool:
    """Signal the job's command's process group (the wrapper forwards nothing it need not)."""
    pid = job.pid()
    if not pid:
        return False
    try:
        os.killpg(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


TERM, KILL = signal.SIGTERM, signal.SIGKILL
