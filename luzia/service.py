"""Running a long-lived component (broker, agent, notifier) in the foreground: build it,
stop it cleanly on SIGTERM/SIGINT, and turn a LuziaError at start into one line and an exit
code; and how such a component listens (its lock is luzia/pidlock.py)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
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
