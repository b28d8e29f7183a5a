"""Peers of other protocol versions (docs/PROTOCOL.md, "Versions"): a broker stepped by the
test serves a first-release agent and CLI (no protocol field, strict about fields), and with
`broker.min_protocol` above theirs refuses them with one line naming both versions."""

from __future__ import annotations

import msgpack
import pytest
import zmq

from luzia import __version__, message, protocol
from luzia.broker import versions
from luzia.errors import ConfigError
from tests.broker.harness import Client, FakeAgent, Peer, make_broker, pump, spec


def v1_hello(name: str = "old1") -> list[bytes]:
    """A Hello as the first release sends it: no protocol, no version."""
    return [b"LZ1", b"HELLO", msgpack.packb({"name": name, "slots": 1, "capabilities": ["code"],
                                              "tags": [], "held": [], "pid": 4242})]


def frames_of(sock: zmq.Socket, b, kind: bytes) -> list[bytes]:
    """Pump the broker until a frame of TYPE `kind` arrives on `sock`; its frames, raw."""
    got: list[list[bytes]] = []

    def arrived() -> bool:
        while sock.poll(0):
            frames = sock.recv_multipart()
            if frames[1] == kind:
                got.append(frames)
                return True
        return False
    pump(b, arrived)
    return got[0]


def test_a_first_release_agent_is_served_in_the_fields_it_knows(broker, ctx):
    old = Peer(ctx, zmq.DEALER, broker.cfg.endpoints.agents, b"old1")
    old.send_raw(v1_hello())
    welcome = msgpack.unpackb(frames_of(old.sock, broker, b"WELCOME")[2])
    assert set(welcome) <= message.V1_FIELDS["Welcome"]     # what protocol 1 accepts
    agent = broker.model.fleet.get("old1")
    assert agent is not None and agent.protocol == 1 and agent.version == ""
    job = spec(type="code")
    broker.submit(job)
    assign = frames_of(old.sock, broker, b"ASSIGN")
    assert set(msgpack.unpackb(assign[2])["job"]) <= message.V1_FIELDS["JobSpec"]
    old.close()


def test_a_new_agent_is_welcomed_with_the_broker_s_version(broker, ctx):
    new = Peer(ctx, zmq.DEALER, broker.cfg.endpoints.agents, b"new1")
    new.send(protocol.Hello(name="new1", slots=1, capabilities=["code"],
                            protocol=protocol.PROTOCOL, version=__version__))
    welcome = new.recv(broker, protocol.Welcome)
    assert (welcome.protocol, welcome.version) == (protocol.PROTOCOL, __version__)
    status = Client(ctx, broker).call(broker, "agents.status").result
    assert [(a["name"], a["protocol"], a["version"]) for a in status] == [
        ("new1", protocol.PROTOCOL, __version__)]


@pytest.fixture
def strict(home):
    home.mkdir()
    b = make_broker(home, "min_protocol = 2")
    yield b
    b.close()


def test_an_agent_below_min_protocol_is_refused_once_per_quiet_period(strict, ctx):
    old = Peer(ctx, zmq.DEALER, strict.cfg.endpoints.agents, b"old1")
    old.send_raw(v1_hello())
    frames = frames_of(old.sock, strict, b"DISCONNECT")
    body = msgpack.unpackb(frames[2])
    assert set(body) == {"reason"}                  # the first release reads it and logs it
    assert body["reason"] == (
        f"refused: this agent is protocol version 1, the broker {protocol.PROTOCOL} (Luzia "
        f"{__version__}, serving protocol 2 and newer): upgrade the agent")
    old.send_raw(v1_hello())                        # it says Hello again at once: silence
    old.send_raw([b"LZ1", b"HEARTBEAT", msgpack.packb({"cpu": 0.5})])
    for _ in range(20):
        strict.turn(0.005)
    assert not old.sock.poll(0)
    assert strict.model.fleet.get("old1") is None
    status = Client(ctx, strict).call(strict, "agents.status").result
    assert [(a["name"], a["health"], a["protocol"]) for a in status] == [("old1", "refused", 1)]
    assert status[0]["outdated"].startswith("this agent is protocol version 1")
    old.close()


def test_a_refused_agent_s_earlier_self_is_lost_and_an_upgraded_one_joins(strict, ctx):
    agent = FakeAgent(ctx, strict, "gpu1")          # protocol 2: served
    job = spec(type="code")
    strict.submit(job)
    agent.recv(strict, protocol.Assign)
    agent.send_raw(v1_hello("gpu1"))                # rolled back to the first release
    agent.recv(strict, protocol.Disconnect)
    record = strict.model.fleet.get("gpu1")
    assert record is not None and not record.live
    assert strict.model.jobs[job.id].state.value == "lost"
    agent.send(protocol.Hello(name="gpu1", slots=1, capabilities=["code"], protocol=2,
                              held=[protocol.HeldJob(job_id=job.id)]))
    welcome = agent.recv(strict, protocol.Welcome)
    assert welcome.adopt == [job.id]
    assert not strict.model.fleet.outdated
    agent.close()


def test_an_upgraded_agent_under_its_new_identity_ends_the_refusal(strict, ctx):
    old = Peer(ctx, zmq.DEALER, strict.cfg.endpoints.agents, b"old1")
    old.send_raw(v1_hello())
    frames_of(old.sock, strict, b"DISCONNECT")
    old.close()
    # this release's identity is NAME/INSTANCE (issue 17), not the first release's NAME
    new = Peer(ctx, zmq.DEALER, strict.cfg.endpoints.agents, b"old1/0123456789abcdef")
    new.send(protocol.Hello(name="old1", slots=1, capabilities=["code"], protocol=2,
                            instance="0123456789abcdef"))
    new.recv(strict, protocol.Welcome)
    status = Client(ctx, strict).call(strict, "agents.status").result
    assert [(a["name"], a["health"], a.get("outdated")) for a in status] == [("old1", "ok", None)]
    new.close()


def test_a_cli_below_min_protocol_is_told_to_upgrade(strict, ctx):
    old = Peer(ctx, zmq.DEALER, strict.cfg.endpoints.control)
    old.send_raw([b"LZ1", b"REQUEST", msgpack.packb({"req": 7, "op": "ping", "args": {}})])
    reply = msgpack.unpackb(frames_of(old.sock, strict, b"REPLY")[2])
    assert reply == {"req": 7, "ok": False, "code": "outdated", "error": (
        f"this CLI is protocol version 1, the broker {protocol.PROTOCOL} (Luzia {__version__}, "
        f"serving protocol 2 and newer): upgrade the CLI")}
    assert Client(ctx, strict).call(strict, "ping").ok     # this release's CLI: served
    old.close()


def test_min_protocol_must_be_one_this_release_speaks(home):
    home.mkdir()
    with pytest.raises(ConfigError, match="broker.min_protocol = 9"):
        make_broker(home, "min_protocol = 9")
    assert versions.REFUSE_QUIET >= 10      # the first release says Hello again at once


def test_a_workspace_job_is_never_sent_to_an_agent_older_than_workspaces(broker, ctx):
    """A protocol-2 agent would ignore the job's repo and run it in a directory of its own:
    the attempt closes as never started (another host is preferred) and the job goes to an
    agent that makes its worktree (issue 12)."""
    old = Peer(ctx, zmq.DEALER, broker.cfg.endpoints.agents, b"old2/00000000000000aa")
    old.send(protocol.Hello(name="old2", slots=1, capabilities=["code"], protocol=2,
                            version="0.2.0", instance="00000000000000aa"))
    old.recv(broker, protocol.Welcome)
    job = spec(type="code", repo="/srv/src", base="main")
    broker.submit(job)
    pump(broker, lambda: any(a["reason"].startswith("never started on old2")
                             for a in broker.model.store.attempts(job.id)))
    [attempt] = broker.model.store.attempts(job.id)
    assert "a job with a workspace needs protocol 3: upgrade it" in attempt["reason"]
    assert not any(isinstance(m, protocol.Assign) for m in old.drain())
    new = FakeAgent(ctx, broker, "new3")                    # this release: protocol 3
    assign = new.recv(broker, protocol.Assign, timeout=10)
    assert (assign.job.id, assign.job.repo, assign.attempt) == (job.id, "/srv/src", 2)
    old.close()
    new.close()
