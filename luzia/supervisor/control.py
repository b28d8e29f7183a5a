"""The supervisor's control socket (`endpoints.supervisor`, a ROUTER; CLIs connect a DEALER).

Requests are `protocol.Request(req, op, args)`, answers `protocol.Reply(req, ok, result,
error, code)`; errors carry code `not_found` (no such program) or `bad_request`. Each
operation is one method below whose docstring is its protocol documentation (circus
style). `luzia supervisor …` (luzia/cli/supervisor.py) is the usual client.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Protocol

from luzia.errors import BadRequest, NotFound
from luzia.supervisor.process import Child

MAX_TAIL = 2000


class Supervising(Protocol):
    """What the operations use of the arbiter (luzia/supervisor/arbiter.py): its children by
    name, and an operator's start or restart (`want`) and stop (`unwant`) of one of them."""

    children: dict[str, Child]

    def want(self, child: Child, restart: bool) -> None: ...

    def unwant(self, child: Child) -> None: ...


class UnknownProgram(NotFound):
    """No program of that name here (code `not_found`)."""


class Controller:
    """Runs control operations against the arbiter; one method per op."""

    def __init__(self, arbiter: Supervising) -> None:
        self.arbiter = arbiter
        self.started = time.monotonic()
        self.ops: dict[str, Callable[[dict[str, Any]], Any]] = {
            "ping": self.ping, "status": self.status, "start": self.start,
            "stop": self.stop, "restart": self.restart, "tail": self.tail,
        }

    def call(self, op: str, args: dict[str, Any]) -> Any:
        handler = self.ops.get(op)
        if handler is None:
            raise BadRequest(f"unknown operation {op!r}; known: {', '.join(sorted(self.ops))}")
        return handler(args)

    # operations ------------------------------------------------------------------------
    def ping(self, args: dict[str, Any]) -> dict[str, Any]:
        """``ping`` → ``{pid, uptime, name: "supervisor"}``: is the supervisor there."""
        return {"pid": os.getpid(), "uptime": round(time.monotonic() - self.started, 1),
                "name": "supervisor"}

    def status(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """``status`` → ``[{name, state, pid, uptime, restarts, exit_status, message}]``, one
        per program in start order. state: stopped, starting, running, backoff, stopping,
        exited, fatal; pid 0 when not running; uptime in seconds (0 when not running);
        restarts: starts after the first; exit_status: of the last run that ended (null: none
        yet; negative: killed by that signal); message: why it is in that state."""
        now = time.monotonic()
        return [c.to_dict(now) for c in self.arbiter.children.values()]

    def start(self, args: dict[str, Any]) -> dict[str, Any]:
        """``start`` {name} → that program's status row. Starts it now if it is not running
        (out of stopped, backoff, fatal or exited) and forgets its deaths and backoff;
        undoes an operator's ``stop``. A running program is left alone."""
        child = self._child(args)
        self.arbiter.want(child, restart=False)
        return child.to_dict(time.monotonic())

    def stop(self, args: dict[str, Any]) -> dict[str, Any]:
        """``stop`` {name} → that program's status row. SIGTERM, SIGKILL after the stop
        timeout; the program then stays stopped: the restart policy never undoes an
        operator's stop (only ``start``/``restart`` do)."""
        child = self._child(args)
        self.arbiter.unwant(child)
        return child.to_dict(time.monotonic())

    def restart(self, args: dict[str, Any]) -> dict[str, Any]:
        """``restart`` {name} → that program's status row. Stops it if running (as ``stop``)
        and starts it again as soon as it has ended; starts it if it was not running."""
        child = self._child(args)
        self.arbiter.want(child, restart=True)
        return child.to_dict(time.monotonic())

    def tail(self, args: dict[str, Any]) -> dict[str, Any]:
        """``tail`` {name, lines=50, after=null} → ``{lines: [str], seq: int}``. Without
        ``after``: the last ``lines`` lines of the program's log file (across one rotation).
        With ``after`` (a ``seq`` from an earlier answer): the lines printed since then, at
        most ``lines`` (what ``tail -f`` polls with). seq counts the lines seen since the
        supervisor started; an ``after`` beyond it (the supervisor restarted) starts over."""
        child = self._child(args)
        lines = args.get("lines", 50)
        after = args.get("after")
        if not isinstance(lines, int) or isinstance(lines, bool) or not 0 < lines <= MAX_TAIL:
            raise BadRequest(f"lines must be a whole number from 1 to {MAX_TAIL}")
        if after is not None and (not isinstance(after, int) or isinstance(after, bool) or after < 0):
            raise BadRequest("after must be a whole number (a seq from an earlier tail)")
        shown, seq = child.output.tail(lines, after)
        return {"lines": shown, "seq": seq}

    # helpers ---------------------------------------------------------------------------
    def _child(self, args: dict[str, Any]) -> Child:
        name = args.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest("name is required: " + ", ".join(self.arbiter.children))
        child = self.arbiter.children.get(name)
        if child is None:
            raise UnknownProgram(f"no program {name[:64]!r} here; programs: "
                                 f"{', '.join(self.arbiter.children) or '(none)'}")
        return child

