"""A job's processes as the agent sees them: the wrapper (its pid recorded in status.json,
or found again by its command line) and the command's process group (the pid file the
wrapper writes). Every runner and the worker use these; they import no runner.
"""

from __future__ import annotations

import os
import signal
import subprocess

import psutil

from luzia.agents.jobdir import JobDir

TERM, KILL = signal.SIGTERM, signal.SIGKILL
WRAPPER_MODULE = "luzia.agents.wrap"     # how a wrapper shows in its command line


def signal_job(job: JobDir, sig: int) -> bool:
    """Signal the command's process group; False while its pid is not known (or it is gone)."""
    pid = job.pid()
    if not pid:
        return False
    return killpg(pid, sig)


def killpg(pid: int, sig: int) -> bool:
    """Signal the process group led by `pid`; False when it is gone or not ours."""
    try:
        os.killpg(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def wrapper_alive(job: JobDir) -> bool:
    """Is the wrapper recorded in status.json still running this job? (pids get reused)"""
    pid = job.status().wrapper_pid
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        return (proc.status() != psutil.STATUS_ZOMBIE
                and str(job.path) in proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def rediscover_wrapper(job: JobDir) -> bool:
    """Find a wrapper whose pid was never recorded (its agent died right after starting it)
    by its command line, and record it; False if no process runs this job."""
    needle = str(job.path)
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if WRAPPER_MODULE in cmdline and needle in cmdline:
            try:
                job.set_status(wrapper_pid=proc.info["pid"])
            except OSError:          # a full disk: alive all the same, found again next time
                return True
            return wrapper_alive(job)
    return False


class Wrappers:
    """The wrappers (or REPL watchers) this agent started: its children, asked directly;
    after an agent restart they are found again by the pid recorded in status.json."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}

    def add(self, job: JobDir, proc: subprocess.Popen) -> None:
        self.procs[job.id] = proc

    def alive(self, job: JobDir) -> bool:
        proc = self.procs.get(job.id)
        if proc is not None:
            return proc.poll() is None
        return wrapper_alive(job)

    def pid(self, job: JobDir) -> int:
        """The wrapper's pid while it runs this job (else 0)."""
        proc = self.procs.get(job.id)
        if proc is not None:
            return proc.pid
        return job.status().wrapper_pid if wrapper_alive(job) else 0

    def reap(self, job: JobDir) -> None:
        proc = self.procs.pop(job.id, None)
        if proc is not None:
            proc.poll()
