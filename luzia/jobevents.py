"""Waking on the broker's job events: a waiter (`client.wait`) or a live view (`luzia jobs
--watch`) asks anew at once when something changed instead of at its next interval."""

from __future__ import annotations

from typing import Any, Protocol

from luzia import keys


class Asker(Protocol):
    """What Events needs of a luzia.client.Control: its zmq context and config."""

    ctx: Any
    cfg: Any


class Events:
    """A SUB socket on the broker's job events, only to wake a waiter or a live view early:
    what changed is asked anew (the event is not trusted beyond "look again")."""

    def __init__(self, ctl: Asker) -> None:
        import zmq

        from luzia import protocol
        self.sub = ctl.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE + 64)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"job.")
        keys.secure_client(self.sub, ctl.cfg, ctl.cfg.endpoints.events)
        self.sub.connect(ctl.cfg.endpoints.events)

    def wait(self, seconds: float) -> None:
        """Until an event arrives (all waiting are taken) or `seconds` have passed."""
        if self.sub.poll(int(seconds * 1000)):
            while self.sub.poll(0):
                self.sub.recv_multipart()

    def __enter__(self) -> Events:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sub.close(0)
