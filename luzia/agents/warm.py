"""Warm panes: the tmux runner's idle sessions, each running a wrapper already started
(`wrap.py --idle SOCKET TOKEN`) that waits for a job, so a job's start costs a rename and a
line on a socket instead of an interpreter's start (docs/DECISIONS.md, "warm panes").

Each idle wrapper connects to the agent's socket (run dir, `warm-<pid>.sock`), says its
session's name and blocks reading. For a job the agent writes the job directory's path to
one; the wrapper does from there what a wrapper started for the job does. The agent then
renames the session to the job's (`luzia-<job id>`) with a tmux client it does not wait
for (its start is not delayed by it), and counts the job alive while that runs. A client
once started completes even if the agent dies; an agent that dies between the path and the
client's start leaves an idle session holding a job, which the next agent finds (its
wrapper has the job's output.log open) and renames before it re-adopts the jobs. A rename
that fails ends the job (its wrapper records the exit). Never a job under an idle name.

An idle session is never a job: its name is not `luzia-*`, so no listing, re-adoption or
`luzia attach` sees it. It ends with its agent: the wrapper reads EOF when the agent's end
of the socket closes (a stop, a crash, kill -9), and a new agent of the same name kills any
left over and removes dead agents' socket files.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from luzia import layout
from luzia.agents import processes
from luzia.agents.tmuxctl import TmuxController, TmuxError

log = logging.getLogger(__name__)

MAX_IDLE = 2          # idle sessions kept at most (fewer with fewer slots): each is a process
START_TTL = 30.0      # seconds an idle session may take to connect before it is given up
RETRY_AFTER = 1.0     # seconds between starts after one failed (tmux down: no busy loop)
# seconds a new idle wrapper waits in its shell before its interpreter starts, while another
# is ready: its start (~30 ms of CPU) then does not compete with the job just handed over
REFILL_DELAY = 0.3


class Idle:
    """One connected idle wrapper: its socket and, once it said it, its session's name."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.session = ""

    def read_name(self) -> bool:
        """Read what the wrapper sent; True once its name is known. A closed or broken
        connection raises EOFError (its wrapper is gone)."""
        try:
            data = self.sock.recv(4096)
        except BlockingIOError:
            return False
        except OSError as exc:
            raise EOFError from exc
        if not data:
            raise EOFError
        self.buffer += data
        if b"\n" in self.buffer:
            self.session = self.buffer.split(b"\n", 1)[0].decode(errors="replace")
        return bool(self.session)

    def waiting(self) -> bool:
        """Still blocked on us: nothing to read (EOF would be readable)."""
        try:
            ready, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not ready

    def close(self) -> None:
        self.sock.close()


class WarmPanes:
    """Up to `size` idle sessions of one agent on its tmux server."""

    def __init__(self, tmux: TmuxController, run_dir: Path, jobs_dir: Path, agent: str,
                 size: int) -> None:
        self.tmux = tmux
        self.jobs_dir = Path(jobs_dir)
        self.prefix = layout.warm_session_prefix(agent)
        self.size = max(0, min(size, MAX_IDLE))
        self.path = Path(run_dir) / layout.warm_socket(os.getpid())
        self.ready: list[Idle] = []          # named, waiting for a job
        self.unnamed: list[Idle] = []        # connected, name not read yet
        self.starting: dict[str, tuple[subprocess.Popen, float]] = {}   # name: tmux, when
        self.renaming: dict[str, tuple[str, subprocess.Popen]] = {}   # job session: idle, tmux
        self.count = 0
        self.retry_at = 0.0
        self.listener: socket.socket | None = None
        self.adopt_left_over(Path(run_dir))
        if self.size:
            self._listen()

    # the job's path --------------------------------------------------------------------
    def take(self, session: str, job_path: Path) -> bool:
        """Give the job to an idle wrapper, its session to be renamed `session`; False when
        none could take it (the caller starts one cold)."""
        self._accept()
        while self.ready:
            idle = self.ready.pop(0)
            try:
                if not idle.waiting():
                    raise OSError("its wrapper is gone")
                idle.sock.sendall(os.fsencode(str(job_path)) + b"\n")
            except OSError as exc:
                log.debug("idle session %s: %s", idle.session, exc)
                continue
            finally:
                idle.close()
            # renamed after the path is sent, by a tmux client not waited for: the command
            # starts meanwhile, and the rename completes even if we die now (an agent that
            # dies before it starts leaves an idle session holding a job: see adopt_left_over)
            self.renaming[session] = (idle.session, self.tmux.spawn(
                "rename-session", "-t", f"={idle.session}", session))
            return True
        return False

    def renaming_to(self, session: str) -> bool:
        """Is an idle session still being renamed `session`? A rename that failed ends its
        job (its wrapper records the exit): never a job left under an idle name."""
        entry = self.renaming.get(session)
        if entry is None:
            return False
        idle, proc = entry
        code = proc.poll()
        if code is None:
            return True
        del self.renaming[session]
        if code:
            log.error("tmux could not rename %s to %s (exit %d); ending its job", idle, session,
                      code)
            self.tmux.kill_session(idle)
        return False

    # off the path ------------------------------------------------------------------------
    def top_up(self, after_take: bool = False) -> None:
        """Take what connected, reap finished starts, start idle sessions up to the size;
        `after_take` (on a job's path) or while one is ready, each new one's interpreter
        starts REFILL_DELAY later, not beside the job just handed over."""
        if self.listener is None:
            return
        self._accept()
        now = time.monotonic()
        for name, (proc, at) in list(self.starting.items()):
            code = proc.poll()
            if code:                     # tmux refused: its wrapper will never connect
                log.warning("idle session %s: tmux new-session exited %d", name, code)
                self.retry_at = now + RETRY_AFTER
            if code or now - at > START_TTL:
                del self.starting[name]
        while len(self.ready) + len(self.starting) < self.size and now >= self.retry_at:
            self._start_one(now, REFILL_DELAY if self.ready or after_take else 0.0)

    def fileno(self) -> int | None:
        """Readable when an idle wrapper connects: the agent's loop wakes to take it."""
        return self.listener.fileno() if self.listener is not None else None

    def close(self) -> None:
        """The agent stops: every idle wrapper reads EOF and ends its session (a rename
        under way completes without us)."""
        self.renaming.clear()
        for idle in self.ready + self.unnamed:
            idle.close()
        self.ready, self.unnamed = [], []
        for proc, _ in self.starting.values():
            proc.poll()
        self.starting.clear()
        if self.listener is not None:
            self.listener.close()
            self.listener = None
            self.path.unlink(missing_ok=True)

    # inside --------------------------------------------------------------------------------
    def _start_one(self, now: float, delay: float) -> None:
        self.count += 1
        name = f"{self.prefix}{os.getpid()}-{self.count}"
        argv = [sys.executable, "-S", "-I", processes.WRAPPER_SCRIPT, "--idle", str(self.path), name]
        try:
            self.starting[name] = (self.tmux.spawn_session(name, argv, delay), now)
        except OSError as exc:
            log.warning("cannot start an idle session: %s", exc)
            self.retry_at = now + RETRY_AFTER

    def _accept(self) -> None:
        """Accept every waiting connection; move the named ones to `ready`."""
        while self.listener is not None:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.warning("warm panes' socket: %s", exc)
                break
            sock.setblocking(False)
            self.unnamed.append(Idle(sock))
        still = []
        for idle in self.unnamed:
            try:
                named = idle.read_name()
            except EOFError:
                idle.close()
                continue
            if named:
                self.starting.pop(idle.session, None)
                self.ready.append(idle)
            else:
                still.append(idle)
        self.unnamed = still

    def _listen(self) -> None:
        self.path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, 0o600)
            sock.listen(16)
        except OSError as exc:
            sock.close()
            log.warning("no warm panes (every tmux job starts its own wrapper): %s", exc)
            return
        sock.setblocking(False)
        self.listener = sock

    def adopt_left_over(self, run_dir: Path) -> None:
        """What an agent of this name left when it was killed: an idle session holding a
        job (it died between handing the job over and the rename) gets the job's name, for
        re-adoption; one still idle (its wrapper ends by itself; this is for one that could
        not) is removed, and so are the socket files of agents no longer running."""
        for name in self.tmux.sessions(self.prefix) or ():
            job_id = self._job_in(name)
            if job_id:
                log.warning("idle session %s runs job %s: renamed to its session", name, job_id)
                try:
                    self.tmux.rename_session(name, layout.job_session(job_id))
                except TmuxError as exc:
                    log.error("idle session %s: %s", name, exc)
            else:
                log.info("removing idle session %s left by an earlier agent", name)
                self.tmux.kill_session(name)
        for path in run_dir.glob("warm-*.sock"):
            pid = layout.warm_socket_pid(path.name)
            if pid is not None and not _running(pid):
                path.unlink(missing_ok=True)

    def _job_in(self, session: str) -> str:
        """The job whose output.log the session's wrapper has open ("" while it is idle)."""
        try:
            files = psutil.Process(self.tmux.pane_pid(session)).open_files()
        except (psutil.Error, ValueError, TmuxError):
            return ""
        for f in files:
            path = Path(f.path)
            if path.name == layout.OUTPUT and path.parent.parent == self.jobs_dir:
                return path.parent.name
        return ""


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
