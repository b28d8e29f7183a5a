"""A lock file held for a process's life: an exclusive `flock` with the holder's pid in it.

One broker per state directory (`<home>/broker.lock`, also held by `luzia db recover`) and
one agent per name and state directory (`<home>/run/agent-<name>.lock`). The lock goes with
the process, however it ends; the pid inside only says who has it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from luzia.errors import InUse, StateDirError


def hold(path: Path, busy: str, holder: str = "", must_write: bool = True) -> int:
    """Take the lock (non-blocking) and write our pid (and `holder`) into it; the open fd,
    which keeps the lock until it is closed. When another process has it: InUse with
    `busy` formatted with its pid (`{pid}`). Without `must_write`, a pid that cannot be
    written (a full disk) leaves the lock held and says nothing: the lock is what counts."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StateDirError(f"cannot open {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        other = os.read(fd, 64).decode(errors="replace").strip() or "?"
        os.close(fd)
        refused = InUse(busy.format(pid=other))
        refused.holder = other
        raise refused from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}{' ' + holder if holder else ''}".encode())
    except OSError as exc:     # disk full, file size limit: say where, not a traceback
        if not must_write:
            return fd
        os.close(fd)
        raise StateDirError(f"cannot write {path}: {exc.strerror or exc}") from None
    return fd
