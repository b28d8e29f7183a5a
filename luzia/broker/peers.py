"""Who is at the other end of a message the broker received (luzia/identity.py says why).

ZeroMQ does not hand a socket's peer credentials to the application, but libzmq reads them
when it accepts an ipc connection (SO_PEERCRED) and attaches them to every message of that
connection as its `Peer-Address` property, `…:<uid>:<gid>:<pid>`; over CURVE, the `User-Id`
property is what our ZAP handler answered for the client's key (curve.py: the key's user).
Both are set by libzmq from the kernel or the handshake, never from the message's content,
so a client cannot put another name in them. The properties need a frame received with
`copy=False` (`receive`).
"""

from __future__ import annotations

import zmq

from luzia.config import Config
from luzia.identity import Submitter, admins, operator, unix_user

CACHED = 10_000         # users remembered by uid or name; past that, looked up each time


class Peers:
    """Names the sender of a message or a spool file, and says whether it is an admin."""

    def __init__(self, cfg: Config) -> None:
        self.operator = operator()
        self.admins = admins(cfg.admins, self.operator)
        self._by_uid: dict[int, Submitter] = {}      # a handful of users: cached, not grown
        self._by_name: dict[str | None, Submitter] = {}
        # an ipc connection's Peer-Address is the same string on each of its messages:
        # parsed once per connection, not per submission
        self._by_address: dict[str, Submitter] = {}

    def submitter(self, name: str | None) -> Submitter:
        found = self._by_name.get(name)
        if found is None:
            found = Submitter(name, name is not None and name in self.admins)
            if len(self._by_name) < CACHED:
                self._by_name[name] = found
        return found

    def of_uid(self, uid: int) -> Submitter:
        """The owner of a spool file, or the Unix user of an ipc connection."""
        found = self._by_uid.get(uid)
        if found is None:
            found = self.submitter(unix_user(uid))
            if len(self._by_uid) < CACHED:
                self._by_uid[uid] = found
        return found

    def of_frame(self, frame: zmq.Frame, ipc: bool) -> Submitter:
        """The sender of the message `frame` came in (received with copy=False): the Unix user
        on an ipc socket, else the user of its CURVE key; no name when neither is there."""
        if ipc:
            address = _property(frame, "Peer-Address")
            found = self._by_address.get(address)
            if found is None:
                uid = _peer_uid(address)
                found = self.submitter(None) if uid is None else self.of_uid(uid)
                if len(self._by_address) < CACHED:
                    self._by_address[address] = found
            return found
        return self.submitter(_property(frame, "User-Id") or None)


def receive(sock: zmq.Socket) -> tuple[list[bytes], zmq.Frame]:
    """One message (zmq.Again when none is waiting): its frames as bytes, and its first frame
    as a zmq.Frame, which carries the connection's properties (every part does). Each part
    says whether more follow (`Frame.more`): no RCVMORE option read per part, as
    recv_multipart does (that and a Frame of every part cost more than the rest of this)."""
    part = sock.recv(zmq.NOBLOCK, copy=False)
    first, frames = part, [part.bytes]
    while part.more:
        part = sock.recv(copy=False)
        frames.append(part.bytes)
    return frames, first


def _property(frame: zmq.Frame, name: str) -> str:
    try:
        return str(frame.get(name))
    except zmq.ZMQError:          # not set on this connection (no ZAP, not ipc)
        return ""


def _peer_uid(address: str) -> int | None:
    """The uid in an ipc `Peer-Address` (`localhost:0:0:9887`; on BSD `…:uid:gid:`)."""
    parts = address.rsplit(":", 3)
    if len(parts) != 4 or not parts[1].isdigit():
        return None
    return int(parts[1])
