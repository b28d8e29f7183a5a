"""One broker per state directory: `<home>/broker.lock`, held for the holder's life.

The broker holds it while it runs; `luzia db recover` holds it while it replaces the
database, so a supervisor cannot start a broker on a file being moved.
"""

from __future__ import annotations

from pathlib import Path

from luzia import layout, pidlock


def hold(home: Path, holder: str = "") -> int:
    """Take the lock (non-blocking) and write our pid (and `holder`) into it; the open fd,
    which keeps the lock until it is closed. InUse names the process that has it."""
    return pidlock.hold(home / layout.BROKER_LOCK,
                        f"another broker (pid {{pid}}) is running on {home}", holder)
