"""`python -m luzia.agents.repl JOB_DIR LOCK_FD`: run one job on a slot's long-lived REPL.

Started by the interactive runner (interactive.py) with the slot's lock inherited as
LOCK_FD. It (re)starts the slot's REPL when it is missing, has exited, or was started in
another work directory; waits for it to be ready; types the task (send_keys, the delay,
Enter); waits until the prompt is back (done = prompt | shell) or the pane stayed unchanged
for `idle` seconds (done = idle); copies what the job printed (the pane's new lines since
the task was sent, scrollback included) into output.log as it appears; records its exit status (`process`).

Exit codes: 0 the REPL answered; 128+N stopped by signal N (the REPL got Ctrl-C);
the REPL's status (1 if it was 0 or unknown) when it exited during the job; 125 when it could not be
started or never became ready.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import signal
import sys
import time
from pathlib import Path

from luzia import layout, snapshots
from luzia.agents.attention import Detector
from luzia.agents.tmuxctl import (
    NO_SESSION,
    SHELL_PROMPT,
    UNKNOWN,
    IdleFor,
    PromptSeen,
    TmuxController,
    TmuxError,
)
from luzia.agents.wrap import record_exit, record_pid

COPY_EVERY = 0.5    # seconds between copies of new output into output.log while the job runs
NOT_READY = 125


def new_lines(before: list[str], after: list[str]) -> list[str]:
    """The lines of `after` that `before` did not have: the common start is skipped, the rest
    is diffed (a TUI that redraws shows up as changed lines, not as the whole screen)."""
    n = 0
    while n < len(before) and n < len(after) and before[n] == after[n]:
        n += 1
    old, new = before[n:], after[n:]
    out: list[str] = []
    for tag, _, _, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if tag in ("insert", "replace"):
            out.extend(new[j1:j2])
    return out


def status_text(status: int | None) -> str:
    if status == UNKNOWN:
        return "status unknown"
    return "its session is gone" if status == NO_SESSION else f"status {status}"


class SlotJob:
    """One job on one slot's REPL."""

    def __init__(self, job_dir: Path, settings: dict, meta: dict, log) -> None:
        self.dir = job_dir
        self.s = settings
        self.meta = meta
        self.session = settings["session"]
        self.ctl = TmuxController(settings["socket"], settings["prefix"])
        self.log = log
        self.stop_signal = 0
        self.written: list[str] = []
        self.before: list[str] = []
        self.copied_at = 0.0
        self.last_seen: list[str] = []
        self.asked = Detector(settings.get("attention", []), settings.get("attention_lines", 10))

    def say(self, text: str) -> None:
        self.log.write(f"luzia: {text}\n".encode())

    def stopping(self) -> bool:
        return self.stop_signal != 0

    # the REPL -----------------------------------------------------------------------
    def ensure_repl(self, cwd: str, any_cwd: bool) -> bool:
        """A live, ready REPL in `cwd`. A job that names no work directory takes the REPL
        wherever it runs, or starts it in the jobs directory (its own is pruned one day)."""
        dead = self.ctl.pane_dead(self.session)
        started_in = self.ctl.show_option(self.session, "@luzia-workdir") if dead is None else ""
        if dead is None and (any_cwd or started_in == cwd):
            if self.wait_ready():
                return True
            self.say(f"the REPL in {self.session} is not ready; restarting it")
        elif dead is not None and dead != NO_SESSION:
            self.say(f"the REPL in {self.session} had exited ({status_text(dead)}); restarting it")
        elif dead is None:
            self.say(f"the REPL in {self.session} runs in {started_in}; restarting it in {cwd}")
        self.ctl.kill_session(self.session)
        cwd = str(self.dir.parent) if any_cwd else cwd
        argv = [a.replace("{workdir}", cwd) for a in self.s["command"]]
        self.ctl.new_session(self.session, self._with_agent_env(argv), cwd,
                             options={"@luzia-workdir": cwd})
        if self.wait_ready():
            return True
        self.say(f"the REPL ({' '.join(argv)}) did not become ready within "
                 f"{self.s['start_timeout']:g}s; its screen:")
        self._write(self._capture(history=False))
        return False

    def _with_agent_env(self, argv: list[str]) -> list[str]:
        """The REPL gets its agent's environment, not the tmux server's (issue 17), through
        the wrapper's --exec; behind a prefix (a container) it gets the container's."""
        env = self.dir / layout.ENV
        if self.s["prefix"] or not env.exists():
            return argv
        return [sys.executable, "-m", "luzia.agents.wrap", "--exec", str(env), "--", *argv]

    def wait_ready(self) -> bool:
        return self.ctl.wait(self.session, self._unless_asked(self._ready(since=None)),
                             self.s["start_timeout"], stop=self.stopping)

    def _unless_asked(self, ready):
        """`ready`, except while the pane asks a person something (attention.py): a REPL
        waiting for an answer is neither ready for a task nor done with one, however idle."""
        def check(lines: list[str], now: float) -> bool:
            return ready(lines, now) and not self.asked.asking(lines)
        return check

    def _ready(self, since: list[str] | None):
        if self.s["done"] == "idle":
            return IdleFor(self.s["idle"])
        pattern = SHELL_PROMPT if self.s["done"] == "shell" else self.s["prompt"]
        return PromptSeen(pattern, since)

    # the job ------------------------------------------------------------------------
    def run(self, task: str, cwd: str, any_cwd: bool) -> int:
        if not self.ensure_repl(cwd, any_cwd):
            return 128 + self.stop_signal if self.stop_signal else NOT_READY
        snapshots.record_for_job(self.meta, self.dir.name, "before", self.log)
        try:
            return self._type_and_wait(task)
        finally:
            snapshots.record_for_job(self.meta, self.dir.name, "after", self.log)

    def _type_and_wait(self, task: str) -> int:
        self.before = self._capture(history=True)
        visible = self.ctl.capture(self.session)
        self.ctl.send_keys(self.session, task.replace("\r\n", "\n"), delay=self.s["send_delay"])
        answered = self.ctl.wait(self.session, self._unless_asked(self._ready(since=visible)),
                                 float("inf"), stop=self.stopping, each=self._copy_new)
        if answered:
            self._finish()
            return 0
        if self.stop_signal:
            self.ctl.send_key(self.session, "C-c")
            self.ctl.wait(self.session, self._ready(since=None), self.s.get("stop_wait", 1.0))
            self._finish()
            self.say(f"stopped by signal {self.stop_signal}; the REPL got Ctrl-C")
            return 128 + self.stop_signal
        status = self.ctl.pane_dead(self.session)
        self._finish()
        self.say(f"the REPL exited during the job ({status_text(status)}); "
                 "the next job restarts it")
        return status if status and status > 0 else 1

    def _capture(self, history: bool) -> list[str]:
        try:
            return self.ctl.capture(self.session, history=history)
        except TmuxError:   # the session is gone entirely
            return []

    def _copy_new(self, visible: list[str]) -> None:
        """While the job runs: append the new lines that are complete (the cursor's line is
        not, unless the cursor waits at its start)."""
        now = time.monotonic()
        if visible == self.last_seen or now - self.copied_at < COPY_EVERY:
            return
        self.last_seen, self.copied_at = visible, now
        complete = new_lines(self.before, self._capture(history=True))
        if not self.ctl.cursor_at_line_start(self.session):
            complete = complete[:-1]
        if complete[:len(self.written)] == self.written and len(complete) > len(self.written):
            self._write(complete[len(self.written):])
            self.written = complete

    def _finish(self) -> None:
        final = new_lines(self.before, self._capture(history=True))
        prompt = self._ready(since=None)
        if isinstance(prompt, PromptSeen) and prompt(final, 0):
            final = final[:-1]          # the prompt that came back is not the job's output
        if final[:len(self.written)] == self.written:
            self._write(final[len(self.written):])
        else:
            self.say("the screen was redrawn while the job ran; its final new lines:")
            self._write(final)

    def _write(self, lines: list[str]) -> None:
        if lines:
            self.log.write(("\n".join(lines) + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2:
        print("usage: python -m luzia.agents.repl JOB_DIR LOCK_FD", file=sys.stderr)
        return 2
    job_dir = Path(args[0])
    record_pid(job_dir, os.getpid())   # the agent's SIGTERM reaches us
    with open(job_dir / layout.OUTPUT, "ab", buffering=0) as log:
        try:
            settings = json.loads((job_dir / "interactive.json").read_text())
            meta = json.loads((job_dir / layout.META).read_text())
            task, cwd = str(meta["job"]["task"]), str(meta["cwd"])
            ws = meta.get("workspace")
            any_cwd = not meta["job"].get("workdir") and not ws
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.write(f"luzia: unreadable job settings in {job_dir}: {exc}\n".encode())
            record_exit(job_dir, 127)
            return 0
        job = SlotJob(job_dir, settings, meta, log)
        if ws:    # its own worktree (docs/WORKSPACES.md): the slot's REPL is restarted in it
            from luzia.agents import workspace
            try:
                workspace.prepare(ws, str(job_dir), {**os.environ, **meta.get("env", {})}, log,
                                  host=str(meta.get("host", "")))
            except workspace.WorkspaceError as exc:
                with contextlib.suppress(OSError, ValueError):
                    os.close(int(args[1]))     # the slot is free again
                record_exit(job_dir, exc.code)
                return 0

        def stop(signum, _frame):
            job.stop_signal = signum
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, stop)
        try:
            code = job.run(task, cwd, any_cwd)
        except TmuxError as exc:
            job.say(str(exc))
            code = NOT_READY
        if ws:
            workspace.finish(ws, task, code, workspace.stop_reason(str(job_dir)), log)
    try:
        os.close(int(args[1]))   # the slot is free before the agent can see the job ended
    except (OSError, ValueError):
        pass
    (job_dir / layout.ENV).unlink(missing_ok=True)   # no REPL started that took it
    record_exit(job_dir, code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
