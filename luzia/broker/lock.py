"""One broker per state directory: `<home>/broker.lock`, held for the holder's life.

The broker holds it while it runs; `luzia db recover` holds it while it replaces the
database, so a supervisor cannot start a broker on a file being moved.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from luzia import layout
from luzia.errors import InUse, StateDirError


def hold(home: Path, holder: str = "") -> int:
    """Take the lock (non-blocking) and write our pid (and `holder`) into it; the open fd,
    which keeps the lock until it is closed. InUse names the process that has it."""
    path = home / layout.BROKER_LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StateDirError(f"cannot open {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        other = os.read(fd, 64).decode(errors="replace").strip() or "?"
        os.close(fd)
        busy = InUse(f"another broker (pid {other}) is running on {home}")
        busy.holder = other
        raise busy from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}{' ' + holder if holder else ''}".encode())
    except OSError as exc:     # disk full, file size limit: say where, not a traceback
        os.close(fd)
        raise StateDirError(f"cannot write {path}: {exc.strerror or exc}") from None
    return fd
