"""Stall detection: a running job whose visible output has not changed for `stall_after`
seconds is stalled (a flag on a running job, not a state of its own).

What counts as visible output is what a person attached to the job would see: the tmux
pane's content (hashed, as the seeds' wait_for_idle does), or, without a pane, the size and
mtime of output.log. When the flag goes up the pane (or the log's tail) is saved to
`stall-snapshot.txt` in the job directory; with `kill_on_stall` the worker then stops the
job with reason `stalled`, and the broker's retries apply.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from luzia import layout
from luzia.agents.jobdir import JobDir, write_atomic
from luzia.config import Config

if TYPE_CHECKING:
    from luzia.agents.runners import Runner

log = logging.getLogger(__name__)

CHECK_MAX = 5.0          # seconds between looks at a job's output, at most
SNAPSHOT_BYTES = 64 * 1024


@dataclass
class StallWatch:
    """One job's output fingerprint and since when it has not changed."""

    after: float                     # seconds without change that make it stalled
    kill: bool
    fingerprint: bytes = b""
    changed_at: float = field(default_factory=time.monotonic)
    next_check: float = 0.0
    stalled: bool = False

    def idle(self, now: float) -> float:
        return max(0.0, now - self.changed_at)

    def check(self, fingerprint: bytes, now: float) -> str:
        """Record a look at the output: "stalled" or "resumed" when the flag flips, else ""."""
        self.next_check = now + min(CHECK_MAX, max(0.05, self.after / 4))
        if fingerprint != self.fingerprint:
            self.fingerprint, self.changed_at = fingerprint, now
            if self.stalled:
                self.stalled = False
                return "resumed"
            return ""
        if not self.stalled and now - self.changed_at >= self.after:
            self.stalled = True
            return "stalled"
        return ""


def watch_for(cfg: Config, project: str) -> StallWatch | None:
    """The stall watch for a job of `project` (its override, else the agent's), or None if off."""
    after = cfg.agent.stall_after
    proj = cfg.projects.get(project)
    if proj is not None and proj.stall_after >= 0:
        after = proj.stall_after
    return StallWatch(after=after, kill=cfg.agent.kill_on_stall) if after > 0 else None


def fingerprint(runner: Runner, job: JobDir) -> bytes:
    """What a person would see changes ⇔ this changes: the pane's hash, else the log's size."""
    pane = runner.pane(job)
    if pane is not None:
        return hashlib.blake2b(pane.encode(errors="replace"), digest_size=16).digest()
    try:
        st = job.output.stat()
    except OSError:
        return b""
    return f"{st.st_size}:{st.st_mtime_ns}".encode()


def snapshot(runner: Runner, job: JobDir, idle: float) -> None:
    """Save what the stalled job shows now, for the person who looks at it later."""
    text = runner.pane(job)
    source = "tmux pane"
    if text is None:
        source = "end of output.log"
        try:
            with open(job.output, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - SNAPSHOT_BYTES))
                text = f.read().decode(errors="replace")
        except OSError:
            text = ""
    head = f"# luzia: job {job.id} stalled: no output change for {idle:.0f}s ({source}, " \
           f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n"
    try:
        write_atomic(job.path / layout.STALL_SNAPSHOT, head + text.rstrip("\n") + "\n", sync=False)
    except OSError as exc:
        log.warning("job %s: cannot save the stall snapshot: %s", job.id, exc)
