"""Serving control requests: the one request/reply loop of every ROUTER that answers
`protocol.Request` with `protocol.Reply` (the broker's control socket, the agent's health
socket, the supervisor's control socket).

An operation is a callable `(op, args) -> result`; raising a LuziaError answers with its
message and its wire `code` (errors.error_for_code turns it back on the client's side).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import zmq

from luzia import protocol
from luzia.errors import LuziaError, ProtocolError


def answer(req: protocol.Request, call: Callable[[str, dict[str, Any]], Any]) -> protocol.Reply:
    """Run one request; the result, or the LuziaError it raised, as its Reply."""
    try:
        result = call(req.op, req.args)
    except LuziaError as exc:
        return failure(req.req, exc)
    return protocol.Reply(req=req.req, ok=True, result=result)


def failure(req: int, exc: LuziaError) -> protocol.Reply:
    """The Reply that says `exc` (its message cut to what Reply.error carries)."""
    return protocol.Reply(req=req, ok=False, error=str(exc)[:protocol.MAX_LINE], code=exc.code)


def requests(sock: zmq.Socket, batch: int,
             bad: BadFrames) -> Iterator[tuple[bytes, protocol.Request]]:
    """(identity, Request) for each request waiting on a ROUTER, at most `batch`; a frame
    that is not a request is counted and dropped."""
    for _ in range(batch):
        try:
            frames = sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        try:
            yield frames[0], parse(frames)
        except ProtocolError as exc:
            bad.drop(str(exc))


def parse(frames: list[bytes]) -> protocol.Request:
    """A ROUTER's frames [identity, *message] as a Request, or ProtocolError."""
    if len(frames) < 2:
        raise ProtocolError("request without identity")
    msg = protocol.decode(frames[1:], expect=(protocol.Request,))
    assert isinstance(msg, protocol.Request)     # decode's expect= guarantees it
    return msg


def send(sock: zmq.Socket, identity: bytes, reply: protocol.Reply, log: logging.Logger) -> None:
    """Send a reply now; a client that went away is not an error."""
    try:
        sock.send_multipart([identity, *protocol.encode(reply)], zmq.NOBLOCK)
    except zmq.ZMQError as exc:
        log.debug("reply to request %d dropped: %s", reply.req, exc)


class BadFrames:
    """Counts dropped frames and logs them rate-limited: the first 20, then every 1000th, so
    a peer sending garbage cannot flood the log."""

    def __init__(self, log: logging.Logger, where: str) -> None:
        self.log = log
        self.where = where
        self.count = 0

    def drop(self, why: str) -> None:
        self.count += 1
        if self.count <= 20 or self.count % 1000 == 0:
            self.log.warning("dropped bad frame on %s (%d so far): %s", self.where, self.count, why)
