"""Running a long-lived component (broker, agent) in the foreground: build it, stop it
cleanly on SIGTERM/SIGINT, and turn a LuziaError at start into one line and an exit code."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Protocol


class Service(Protocol):
    def run(self) -> None: ...
    def stop(self) -> None: ...


def serve(prog: str, make: Callable[[], Service]) -> int:
    from luzia.errors import LuziaError
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
