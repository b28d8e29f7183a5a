"""A notifier beside a LocalFleet: `luzia-notify` as a real process, asked over its socket."""

from __future__ import annotations

import itertools
import time
from typing import Any

import zmq

from luzia import protocol
from tests.fleet import PY, LocalFleet
from tests.helpers import wait_for

FAST_NOTIFY = """
retry_initial = 0.2
retry_max = 1.0
poll = 0.5
rate = 600
"""

_req = itertools.count(1)


def notify_config(targets: dict[str, str], rules: list[tuple[list[str], list[str]]],
                  extra: str = "") -> str:
    """A [notify] section: targets by name, rules as (events, targets); `extra` lines
    override FAST_NOTIFY's."""
    given = {line.split("=")[0].strip() for line in extra.splitlines() if "=" in line}
    fast = "".join(f"{line}\n" for line in FAST_NOTIFY.splitlines()
                   if "=" in line and line.split("=")[0].strip() not in given)
    text = "[notify]\n" + fast + extra + "\n[notify.targets]\n"
    text += "".join(f'{name} = "{url}"\n' for name, url in targets.items())
    for events, to in rules:
        text += f"\n[[notify.rules]]\nevents = {events!r}\ntargets = {to!r}\n".replace("'", '"')
    return text


def ask(fleet: LocalFleet, op: str, timeout: float = 3.0) -> Any:
    """One request to the notifier's socket; None if it did not answer in time."""
    sock = fleet.ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(f"ipc://{fleet.home}/run/notify")
        req = next(_req)
        sock.send_multipart(protocol.encode(protocol.Request(req=req, op=op)))
        if not sock.poll(int(timeout * 1000)):
            return None
        reply = protocol.decode(sock.recv_multipart())
        assert isinstance(reply, protocol.Reply) and reply.ok, reply
        return reply.result
    finally:
        sock.close(0)


def start_notifier(fleet: LocalFleet) -> None:
    """luzia-notify up, and past its first catch-up (its cursor set): what the broker does
    from now on is told."""
    fleet.start("notify", [PY, "-m", "luzia.notify"])
    wait_for(lambda: (ask(fleet, "status", 1.0) or {}).get("cursor") is not None, 30,
             message="luzia-notify up with its cursor set")


def target(fleet: LocalFleet, name: str) -> dict[str, Any]:
    status = ask(fleet, "status") or {}
    return next((t for t in status.get("targets", []) if t["name"] == name), {})


def ping_times(fleet: LocalFleet, n: int, deadline: float) -> list[float]:
    """n broker pings, each answered within `deadline` seconds; their round trips."""
    times = []
    for _ in range(n):
        start = time.monotonic()
        assert fleet.control("ping", timeout=deadline) is not None, "the broker did not answer a ping"
        times.append(time.monotonic() - start)
    return times
