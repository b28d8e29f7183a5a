"""Who sent a submission: an ipc connection's Peer-Address, read per message, parsed once."""

from __future__ import annotations

import os
from typing import cast

import zmq

from luzia.broker import peers


class Message:
    """What of a received zmq.Frame `Peers.of_frame` reads: its connection's properties."""

    def __init__(self, **props: str) -> None:
        self.props = props

    def get(self, name: str) -> str:
        if name not in self.props:
            raise zmq.ZMQError(zmq.EINVAL)
        return self.props[name]


def message(**props: str) -> zmq.Frame:
    return cast(zmq.Frame, Message(**props))


def test_a_connections_user_is_looked_up_once_and_each_uid_apart(broker, monkeypatch):
    looked_up: list[int] = []
    real = peers.unix_user

    def counted(uid: int) -> str:
        looked_up.append(uid)
        return real(uid)
    monkeypatch.setattr(peers, "unix_user", counted)
    known = peers.Peers(broker.cfg)
    me, other = os.getuid(), os.getuid() + 4242
    mine = message(**{"Peer-Address": f"localhost:{me}:0:100"})
    for _ in range(3):
        assert known.of_frame(mine, ipc=True).name == real(me)
    assert looked_up == [me]
    theirs = known.of_frame(message(**{"Peer-Address": f"localhost:{other}:0:101"}), ipc=True)
    assert theirs.name == real(other) and looked_up == [me, other]


def test_no_peer_address_or_no_uid_names_nobody(broker):
    known = peers.Peers(broker.cfg)
    assert known.of_frame(message(), ipc=True).name is None
    assert known.of_frame(message(**{"Peer-Address": "localhost"}), ipc=True).name is None
    assert known.of_frame(message(**{"User-Id": "alice"}), ipc=False).name == "alice"
