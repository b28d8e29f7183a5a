"""A full disk under the jobs directory: the agent degrades instead of crash-looping
(issue 17, item 5).

A write that fails because the disk (or a quota, or a file size limit) is full marks the
agent degraded with the reason: its heartbeats say so, the broker places no new work on it
(`luzia agents status` and `luzia top` show why), the jobs it runs go on and end normally
(their exit codes were reserved when they started). Every few seconds a probe write tells
whether space is back; then the agent takes work again by itself.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
PROBE_EVERY = 5.0            # seconds between probes while degraded
PROBE_BYTES = 256 * 1024     # what a job's start needs, with room to spare (meta, env, status)
PROBE_NAME = ".luzia-space-probe"


def is_full(exc: BaseException) -> bool:
    """Did this write fail because there is no space (disk, quota, file size limit)?"""
    return isinstance(exc, OSError) and exc.errno in FULL


class Disk:
    """Whether the jobs directory's disk has room; `full` is the reason ("" when it has)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.full = ""
        self.next_probe = 0.0

    def failed(self, exc: BaseException, now: float) -> bool:
        """Note a failed write; True when it was for want of space (the agent is degraded)."""
        if not is_full(exc):
            return False
        if not self.full:
            log.error("disk full under %s (%s): taking no new jobs until there is space again",
                      self.root, exc.strerror if isinstance(exc, OSError) else exc)
        code = getattr(exc, "errno", None) or errno.ENOSPC
        self.full = f"disk full: cannot write under {self.root} ({os.strerror(code)})"
        self.next_probe = now + PROBE_EVERY
        return True

    def probe(self, now: float) -> None:
        """While degraded, now and then: is there space again? (write, fsync, remove)"""
        if not self.full or now < self.next_probe:
            return
        self.next_probe = now + PROBE_EVERY
        path = self.root / PROBE_NAME
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                if os.write(fd, b"\0" * PROBE_BYTES) < PROBE_BYTES:
                    return
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            return
        finally:
            try:
                path.unlink()
            except OSError:
                pass
        log.info("space again under %s: taking jobs again", self.root)
        self.full = ""
