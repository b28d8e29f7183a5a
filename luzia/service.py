"""Running a long-lived component (broker, agent, notifier) in the foreground: build it,
stop it cleanly on SIGTERM/SIGINT, and turn a LuziaError at start into one line and an exit
code; and what such a component holds while it runs: its lock, its listening sockets."""

from __future__ import annotations

import fcntl
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from luzia.errors import InUse, LuziaError, StateDirError

if TYPE_CHECKING:
    import zmq


class Service(Protocol):
    def run(self) -> None: ...
    def stop(self) -> None: ...


def serve(prog: str, make: Callable[[], Service]) -> int:
    try:
        service = make()
    except LuziaError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.exit_code
    signal.signal(signal.SIGTERM, lambda *_: service.stop())
    signal.signal(signal.SIGINT, lambda *_: service.stop())
    try:
        service.run()
    except LuziaError as exc:      # it had to stop (its database failed): one line, its code
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def hold_lock(path: Path, what: str, holder: str = "") -> int:
    """One `what` per state dir: take the lock on `path` (non-blocking) and write our pid
    (and `holder`) into it; the open fd, which keeps the lock until it is closed. InUse
    names the process that has it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StateDirError(f"cannot open {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        other = os.read(fd, 64).decode(errors="replace").strip() or "?"
        os.close(fd)
        busy = InUse(f"another {what} (pid {other}) is running on {path.parent}")
        busy.holder = other
        raise busy from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}{' ' + holder if holder else ''}".encode())
    except OSError as exc:     # disk full, file size limit: say where, not a traceback
        os.close(fd)
        raise StateDirError(f"cannot write {path}: {exc.strerror or exc}") from None
    return fd


def listen(sock: zmq.Socket, endpoint: str, what: str) -> zmq.Socket:
    """Bind `sock` to `endpoint` (closed again if it cannot); an ipc socket file is made
    0600, so only our user reaches it."""
    import zmq
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        sock.close()
        raise StateDirError(f"cannot listen on {endpoint} ({what}): {exc}") from None
    if endpoint.startswith("ipc://"):
        os.chmod(endpoint[len("ipc://"):], 0o600)
    return sock
