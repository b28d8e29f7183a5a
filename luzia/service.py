"""Running a long-lived component (broker, agent, notifier) in the foreground: build it,
stop it cleanly on SIGTERM/SIGINT, and turn a LuziaError at start into one line and an exit
code; how such a component listens, and keeping the ipc:// socket files it listens on
(SocketFiles). Its lock is luzia/pidlock.py."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from luzia.errors import LuziaError, StateDirError

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


def listen(sock: zmq.Socket, endpoint: str, what: str, mode: int | None = 0o600) -> zmq.Socket:
    """Bind `sock` to `endpoint` (closed again if it cannot); an ipc socket file is made
    `mode` (0600: only our user reaches it; None leaves it as made)."""
    import zmq
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        sock.close()
        raise StateDirError(f"cannot listen on {endpoint} ({what}): {exc}") from None
    if mode is not None and endpoint.startswith("ipc://"):
        os.chmod(endpoint[len("ipc://"):], mode)
    return sock


class SocketFiles:
    """The ipc:// socket files a process listens on, bound again when one is gone.

    A tmp cleaner (or a person tidying run/) may delete them: the listening socket still
    works for the connections it has, but no new peer can reach it by its path. `check(now)`
    from the process's periodic tick binds each missing path again, next to the old listener
    (a zmq socket may listen on several), so open connections are not dropped. A path that
    exists again but is another socket is left alone: another process holds it now."""

    EVERY = 1.0          # seconds between two looks

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.watched: list[tuple[zmq.Socket, str, int | None]] = []
        self.failing: set[str] = set()
        self.next_look = 0.0

    def bind(self, sock: zmq.Socket, endpoint: str, mode: int | None = None,
             what: str = "") -> zmq.Socket:
        """listen(): bound, the file chmod'ed to `mode`, and watched when it is ipc://."""
        listen(sock, endpoint, what or endpoint, mode)
        if endpoint.startswith("ipc://"):
            self.watched.append((sock, endpoint, mode))
        return sock

    def check(self, now: float) -> None:
        if now < self.next_look:
            return
        self.next_look = now + self.EVERY
        for sock, endpoint, mode in self.watched:
            path = endpoint[len("ipc://"):]
            if os.path.lexists(path):
                self.failing.discard(path)
                continue
            try:
                from luzia.config import ensure_private_dir
                ensure_private_dir(Path(path).parent)      # run/ itself may be gone
                sock.bind(endpoint)
                if mode is not None:
                    os.chmod(path, mode)
            except Exception as exc:  # zmq, OS or state-dir errors alike: say it once, try again
                if path not in self.failing:
                    self.failing.add(path)
                    self.log.error("socket file %s is gone and cannot be made again: %s", path, exc)
                continue
            self.failing.discard(path)
            self.log.warning("socket file %s was deleted (a tmp cleaner?): listening on it again",
                             path)
