"""A job's processes as the agent sees them: its tracker — the wrapper, or the spawner that
started it (its pid recorded in the job's record, or found again by its command line) — and
the command's process group (the pid the tracker writes into `process`). Every runner and
the worker use these; they import no runner.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from luzia import layout
from luzia.agents.jobdir import JobDir

log = logging.getLogger(__name__)

TERM, KILL = signal.SIGTERM, signal.SIGKILL
WRAPPER_MODULE = "luzia.agents.wrap"     # how a wrapper shows in its command line
WRAPPER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wrap.py")  # ... or so
DRAIN_WAIT = 10.0      # seconds a new agent waits for an orphaned spawner to read its last jobs
REAP_WAIT = 2.0        # seconds for a spawner whose socket closed to finish exiting
SPAWNER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "spawner.py")


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
    """Is the tracker recorded in the job's record still tracking this job? (pids get reused) A
    wrapper names the job's directory in its command line, a spawner the jobs directory."""
    pid = job.status().wrapper_pid
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return str(job.path) in cmdline or (SPAWNER_SCRIPT in cmdline
                                        and str(job.path.parent) in cmdline)


def spawner_drained(job: JobDir, timeout: float = DRAIN_WAIT) -> bool:
    """Is a spawner this job's tracker? Then wait until it has read every job its agent sent
    (its mark is gone) or it died: a job it has not started by then it never will."""
    pid = spawner_of(job)
    if not pid:
        return False
    try:
        mark = Path(psutil.Process(pid).cmdline()[-1])
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, IndexError):
        return True
    deadline = time.monotonic() + timeout
    while mark.exists() and wrapper_alive(job) and time.monotonic() < deadline:
        time.sleep(0.01)   # the spawner reads as soon as its agent is gone: milliseconds
    return True


def spawner_of(job: JobDir) -> int:
    """The pid of the live spawner tracking this job, or 0 (none, or a wrapper tracks it)."""
    pid = job.status().wrapper_pid
    try:
        return pid if pid and SPAWNER_SCRIPT in psutil.Process(pid).cmdline() \
            and wrapper_alive(job) else 0
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return 0


def rediscover_wrapper(job: JobDir) -> bool:
    """Find a wrapper whose pid was never recorded (its agent died right after starting it)
    by its command line, and record it; False if no process runs this job."""
    needle = str(job.path)
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if (WRAPPER_MODULE in cmdline or WRAPPER_SCRIPT in cmdline) and needle in cmdline:
            try:
                job.set_status(wrapper_pid=proc.info["pid"])
            except OSError:          # a full disk: alive all the same, found again next time
                return True
            return wrapper_alive(job)
    return False


class Wrappers:
    """The wrappers (or REPL watchers) this agent started: its children, asked directly;
    after an agent restart they are found again by the pid in the job's record."""

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


class SpawnerLink:
    """The agent's end of its spawner (spawner.py): started with the first job that needs it,
    again after it died. Jobs are sent as their directory's path, one a line; the spawner
    answers `exited JOB_ID CODE` when one ends (after writing its exit status)."""

    def __init__(self, jobs_dir: Path, run_dir: Path) -> None:
        self.jobs_dir = jobs_dir
        self.run_dir = run_dir
        self.proc: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.sent: set[str] = set()     # jobs it runs for us whose end we have not heard
        self.buffer = b""
        self.mark: Path | None = None

    def ensure(self) -> int:
        """A live spawner; its pid."""
        if self.proc is not None and self.proc.poll() is None and self.sock is not None:
            return self.proc.pid
        self.close()
        mark = self.run_dir / layout.spawner_mark(f"{os.getpid()}-{time.time_ns()}")
        mark.touch()      # before any job is sent: removed once the spawner has read them all
        ours, theirs = socket.socketpair()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-S", "-I", SPAWNER_SCRIPT, str(self.jobs_dir), str(mark)],
                stdin=theirs.fileno(), stdout=subprocess.DEVNULL, start_new_session=True,
                close_fds=True)
        except OSError:
            ours.close()
            mark.unlink(missing_ok=True)
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock, self.mark = ours, mark
        log.info("spawner started (pid %d)", self.proc.pid)
        return self.proc.pid

    def send(self, job: JobDir) -> None:
        """Hand the job to the spawner (OSError: it is gone, the job did not start)."""
        path = os.fsencode(str(job.path))
        if b"\n" in path:
            raise ValueError(f"a job directory with a newline in its path: {job.path!r}")
        assert self.sock is not None      # ensure() came first
        self.sock.setblocking(True)
        try:
            self.sock.sendall(path + b"\n")
        finally:
            self.sock.setblocking(False)
        self.sent.add(job.id)

    def alive(self, job: JobDir) -> bool:
        return job.id in self.sent and self.proc is not None and self.proc.poll() is None

    def fileno(self) -> int | None:
        return self.sock.fileno() if self.sock is not None else None

    def ended(self) -> list[str]:
        """The jobs the spawner said ended since the last call (their exit codes are written)."""
        if self.sock is None:
            return []
        done: list[str] = []
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:      # it died: what it still ran has no tracker now (alive: False)
                log.warning("the spawner (pid %d) is gone", self.proc.pid if self.proc else 0)
                self._reap()
                self.close()
                break
            self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            words = line.split()
            if len(words) == 3 and words[0] == b"exited":
                job_id = words[1].decode(errors="replace")
                self.sent.discard(job_id)
                done.append(job_id)
        return done

    def _reap(self) -> None:
        """The spawner's end of the socket closed: it is exiting (it holds the socket until
        its last command is reaped). Its files close before it can be waited for, so wait
        until it can: close() then sees it ended and removes the mark it left."""
        if self.proc is not None:
            try:
                self.proc.wait(REAP_WAIT)
            except subprocess.TimeoutExpired:
                log.warning("the spawner (pid %d) closed its socket but still runs",
                            self.proc.pid)

    def close(self) -> None:
        """Let go of the spawner: it finishes the commands it runs and then exits."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.proc is not None:
            # reaped if it already ended; else it outlives us by design (and removes its mark)
            if self.proc.poll() is not None and self.mark is not None:
                self.mark.unlink(missing_ok=True)    # it died before it could
            self.proc = None
