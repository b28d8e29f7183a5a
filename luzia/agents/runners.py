"""Runners start a job: in a tmux session a person can attach to, or as a plain process
group. Every job ends the same way: its tracker writes the exit status into the job's
`process` file. The tracker is the wrapper (wrap.py, a Python process per job, in a pane or
not) or, for a plain command without a terminal, the agent's spawner (spawner.py: one
process that starts and reaps them all, a few hundred microseconds a job instead of an
interpreter's start).

The worker owns the timing (SIGTERM, then SIGKILL after the grace) so its loop never
blocks; a runner only starts, answers "is it still there?", shows what a person attached
would see (`pane`), removes what is left (`kill`) when even SIGKILL to the command did
not end the wrapper, and tells the worker which jobs it saw end (`ended`, woken by `fileno`).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Protocol

from luzia import layout, snapshots
from luzia.agents import processes
from luzia.agents.attention import Screen
from luzia.agents.jobdir import JobDir
from luzia.agents.tmuxctl import TmuxController, TmuxError
from luzia.agents.warm import WarmPanes
from luzia.config import Config

log = logging.getLogger(__name__)

GIT_TREE_TTL = 10.0  # seconds a directory's "in a git work tree" is reused
SESSIONS_TTL = 0.2   # seconds a tmux session listing is reused (one tmux call per tick, not per job)


def wrapper_argv(job: JobDir, pty: bool, lean: bool = False) -> list[str]:
    """Our own interpreter and the job directory: never the task text. `lean`: the wrapper
    as a file without site-packages (a plain job: it needs nothing from them)."""
    run = ["-S", "-I", processes.WRAPPER_SCRIPT] if lean else ["-m", processes.WRAPPER_MODULE]
    return [sys.executable, *run, str(job.path)] + (["--pty"] if pty else [])


class WrapperNeeded:
    """Why a job needs the full wrapper rather than the spawner ("": it does not): the steps
    around its command that only wrap.py takes. The seam for more such steps: a job's own
    git workspace (meta `workspace`) or an output adapter reading its stream (meta `format`)."""

    def __init__(self) -> None:
        self.trees: dict[str, tuple[bool, float]] = {}   # directory: (in a git tree, when seen)

    def __call__(self, meta: dict[str, Any]) -> str:
        if meta.get("workspace"):
            return "workspace"
        if (meta.get("format") or "none") != "none":
            return "output adapter"
        if meta.get("git_snapshots", True) and self.in_git_tree(str(meta.get("cwd", ""))):
            return "git snapshots"
        return ""

    def in_git_tree(self, path: str) -> bool:
        """Is `path` inside a git work tree? A look for .git upwards (no git process per
        job); what its parent holds is remembered for a while (most jobs share one)."""
        if not path:
            return False
        if "GIT_DIR" in os.environ or os.path.exists(os.path.join(path, ".git")):
            return True
        parent, now = os.path.dirname(path), time.monotonic()
        known, seen = self.trees.get(parent, (False, -1e9))
        if now - seen > GIT_TREE_TTL:
            known = snapshots.dot_git_above(parent)
            if len(self.trees) > 1000:
                self.trees.clear()
            self.trees[parent] = (known, now)
        return known


class Runner(Protocol):
    name: str

    def start(self, job: JobDir) -> str: ...
    def alive(self, job: JobDir) -> bool: ...
    def kill(self, job: JobDir) -> None: ...
    def reap(self, job: JobDir) -> None: ...
    def pane(self, job: JobDir) -> str | None: ...
    def screen(self, job: JobDir) -> Screen | None: ...
    def fileno(self) -> int | None: ...
    def ended(self) -> list[str]: ...
    def close(self) -> None: ...


def session_screen(tmux: TmuxController, session: str) -> Screen | None:
    """What `session`'s pane shows, for the attention watch; None without one."""
    if not session:
        return None
    try:
        lines, answered = tmux.screen(session, layout.ANSWERED_OPTION)
    except TmuxError:
        return None
    return Screen(lines, answered)


class Untold:
    """A runner whose trackers tell the agent nothing: it finds each end in the job's
    directory when it looks (the wrappers write the exit status)."""

    def fileno(self) -> int | None:
        return None

    def ended(self) -> list[str]:
        return []

    def close(self) -> None:
        pass


class SubprocessRunner:
    """No terminal. A plain command goes to the agent's spawner, one that needs more to the
    wrapper as a child in its own session; either outlives the agent."""

    name = "subprocess"

    def __init__(self, cfg: Config) -> None:
        self.wrappers = processes.Wrappers()
        self.spawner = processes.SpawnerLink(Path(cfg.jobs_dir), cfg.run_dir)
        self.wrapper_needed = WrapperNeeded()

    def start(self, job: JobDir) -> str:
        why = self.wrapper_needed(job.meta())
        if not why:
            # recorded before the job is sent, so a restarted agent knows who runs it
            job.set_status(wrapper_pid=self.spawner.ensure(), runner=self.name)
            self.spawner.send(job)
            return ""
        log.debug("job %s: the wrapper runs it (%s)", job.id, why)
        job.for_wrapper()
        job.set_status(runner=self.name)     # the attempt, before its wrapper may run it
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
        if job.id in self.spawner.sent:
            return self.spawner.alive(job)
        return self.wrappers.alive(job)

    def kill(self, job: JobDir) -> None:
        """What is left of the job: the wrapper's group, or the command's (never the spawner)."""
        if job.id in self.spawner.sent or processes.spawner_of(job):
            processes.signal_job(job, processes.KILL)
            return
        pid = self.wrappers.pid(job)
        if pid:
            processes.killpg(pid, processes.KILL)

    def reap(self, job: JobDir) -> None:
        self.wrappers.reap(job)
        self.spawner.sent.discard(job.id)

    def pane(self, job: JobDir) -> str | None:
        return None

    def screen(self, job: JobDir) -> Screen | None:
        return None     # no terminal: nothing can wait for a person's keys

    def fileno(self) -> int | None:
        return self.spawner.fileno()

    def ended(self) -> list[str]:
        return self.spawner.ended()

    def close(self) -> None:
        self.spawner.close()


class TmuxRunner(Untold):
    """One detached session `luzia-<job id>` per job on a private tmux server (`tmux -L`),
    reached through agent.tmux_prefix (e.g. into a container whose paths match ours). A job
    is handed to a warm pane (warm.py: an idle session whose wrapper already runs) when one
    is ready, else its session starts its own wrapper."""

    name = "tmux"

    def __init__(self, cfg: Config) -> None:
        self.socket = cfg.agent.tmux_socket
        self.tmux = TmuxController(self.socket, cfg.tmux_prefix)
        self.wrapper_needed = WrapperNeeded()
        self._listed: set[str] | None = set()
        self._listed_at = -1e9
        # idle sessions with a started wrapper (warm.py); none through a prefix (a container
        # may not share our run directory's socket)
        self.warm = WarmPanes(self.tmux, cfg.run_dir, Path(cfg.jobs_dir), cfg.agent.name,
                              0 if cfg.tmux_prefix else cfg.agent.slots)
        self.warm.top_up()

    def start(self, job: JobDir) -> str:
        session = layout.job_session(job.id)
        job.set_status(runner=self.name, session=session, socket=self.socket)
        job.for_wrapper()
        self._listed_at = -1e9
        if not self._warm_fits(job, session) or not self.warm.take(session, job.path):
            lean = not self.wrapper_needed(job.meta())
            # the session's command holds only our interpreter and the job dir (shell-quoted)
            self.tmux.start_session(session, wrapper_argv(job, pty=True, lean=lean),
                                    cwd=_cwd(job))
        self.warm.top_up(after_take=True)    # a new idle session, not waited for
        return session

    def _warm_fits(self, job: JobDir, session: str) -> bool:
        """May a warm pane take this job? Not a job with its own worktree: its session starts
        there (where a person's new window opens; tmux cannot move a session's directory),
        nor one whose session name is still listed (an earlier attempt's: tmux refuses it)."""
        try:
            own_tree = bool(job.meta().get("workspace"))
        except (OSError, ValueError):
            own_tree = True
        return not own_tree and not (self._listed and session in self._listed)

    def alive(self, job: JobDir) -> bool:
        """Its session is listed, or tmux could not say (the worker looks again next tick;
        the exit status the wrapper writes is what ends a job)."""
        session = layout.job_session(job.id)
        if session in self.warm.renaming:       # handed to an idle session being renamed
            if self.warm.renaming_to(session):
                return True
            self._listed_at = -1e9              # renamed just now: a listing from before lacks it
        listed = self._sessions()
        return listed is None or session in listed

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

    def fileno(self) -> int | None:
        return self.warm.fileno()

    def ended(self) -> list[str]:
        """Nothing to tell (the wrappers write the exit status); an idle wrapper connected."""
        self.warm.top_up()
        return []

    def close(self) -> None:
        self.warm.close()

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
