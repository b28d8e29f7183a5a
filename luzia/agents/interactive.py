"""The interactive runner: one long-lived REPL (a coding agent's TUI) per slot, in a tmux
session `luzia-<agent>-slot-<n>`; a job is typed into a free slot's REPL.

The agent's loop must not block, so each job gets a small watcher process
(`python -m luzia.agents.repl JOB_DIR LOCK_FD`, see repl.py) that types the task, waits for
the prompt or for the pane to go idle, copies the job's output into output.log and writes
exit_code, exactly as the wrapper of the other runners does. The watcher holds its slot's
lock (an flock the agent takes and hands over, so two jobs never share a REPL) and outlives
an agent restart: the restarted agent re-adopts the job by the watcher's pid and the job
ends normally.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import sys
from itertools import count
from pathlib import Path

from luzia import layout
from luzia.agents import processes
from luzia.agents.attention import Screen
from luzia.agents.jobdir import JobDir, write_atomic
from luzia.agents.runners import session_screen
from luzia.agents.tmuxctl import TmuxController, TmuxError
from luzia.config import Config, ensure_private_dir

log = logging.getLogger(__name__)


slot_prefix = layout.slot_session_prefix   # tmux turns "." and ":" into "_"; so do we


class InteractiveRunner:
    """Starts a watcher per job on a free slot; the watcher does the talking to tmux."""

    name = "interactive"

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.ia = cfg.interactive
        self.tmux = TmuxController(cfg.agent.tmux_socket, cfg.tmux_prefix)
        self.prefix = slot_prefix(cfg.agent.name)
        self.locks = ensure_private_dir(cfg.run_dir / "slots")
        self.wrappers = processes.Wrappers()

    def start(self, job: JobDir) -> str:
        slot, fd = self._take_slot()
        session = f"{self.prefix}{slot}"
        try:
            write_atomic(job.path / "interactive.json", json.dumps(self._settings(session, slot)))
            proc = subprocess.Popen(
                [sys.executable, "-m", "luzia.agents.repl", str(job.path), str(fd)],
                pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True)
        finally:
            os.close(fd)   # the watcher's copy keeps the slot locked until it exits
        self.wrappers.add(job, proc)
        try:         # it runs now: a full disk here must not make it "never started"
            job.set_status(wrapper_pid=proc.pid, runner=self.name, session=session, slot=slot,
                           socket=self.cfg.agent.tmux_socket)
        except OSError as exc:
            log.warning("job %s: started, but its status.json: %s", job.id, exc.strerror or exc)
        return session

    def alive(self, job: JobDir) -> bool:
        return self.wrappers.alive(job)

    def kill(self, job: JobDir) -> None:
        """The watcher did not end on SIGKILL of its group: remove the slot's REPL too (it is
        in an unknown state; the next job on that slot starts a fresh one)."""
        if processes.wrapper_alive(job):
            processes.signal_job(job, processes.KILL)     # the watcher wrote its own pid
        session = job.status().session
        if session.startswith(self.prefix):
            try:
                self.tmux.kill_session(session)
            except TmuxError as exc:
                log.warning("job %s: tmux kill-session %s: %s", job.id, session, exc)

    def reap(self, job: JobDir) -> None:
        self.wrappers.reap(job)

    def pane(self, job: JobDir) -> str | None:
        """None: a slot's pane shows its REPL, not one job; stall detection reads output.log."""
        return None

    def screen(self, job: JobDir) -> Screen | None:
        """The slot's pane: while the job runs, its REPL answers this job only."""
        session = job.status().session
        return session_screen(self.tmux, session) if session.startswith(self.prefix) else None

    def _take_slot(self) -> tuple[int, int]:
        """The lowest slot whose lock is free, locked; an fd the watcher inherits. A busy
        slot is held by a live watcher (the kernel drops the lock when it exits)."""
        for slot in count():
            path = Path(self.locks) / f"{self.cfg.agent.name}-{slot}.lock"
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return slot, fd
        raise AssertionError("unreachable")  # pragma: no cover

    def _settings(self, session: str, slot: int) -> dict:
        ia = self.ia
        return {"socket": self.cfg.agent.tmux_socket, "prefix": self.cfg.tmux_prefix,
                "session": session, "slot": slot, "command": list(ia.command), "done": ia.done,
                "prompt": ia.prompt, "idle": ia.idle, "send_delay": ia.send_delay,
                "start_timeout": ia.start_timeout,
                # a REPL asking a question is not done, however idle its pane (attention.py)
                "attention": list(self.cfg.attention.patterns) if self.cfg.attention.enabled
                else [], "attention_lines": self.cfg.attention.lines,
                # after Ctrl-C, wait for the prompt only so long that the agent's SIGKILL
                # (kill_grace after its SIGTERM) does not come first
                "stop_wait": min(2.0, self.cfg.agent.kill_grace / 3)}
