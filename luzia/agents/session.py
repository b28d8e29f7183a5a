"""The agent's session with the broker: one DEALER, Hello (with the jobs it still holds) →
Welcome, heartbeats both ways (ours carry load, GPU readings, credits and the jobs we hold),
and a reconnect with backoff (1 s doubling to 32 s) when the broker has been silent for
`liveness` beats.

Silence is counted in time spent listening, as the Paranoid Pirate worker counts missed
beats per poll: the time this agent spent starting a job or watching its jobs is not the
broker's silence (its beats wait in the socket meanwhile). Counting wall time instead made
a busy agent drop its connection, and the Started it had just sent with it.

One live agent per name (issue 17): our ZeroMQ identity is the name and an instance token
(the host's machine id and our state directory, hashed), the same for every process of this
agent here. A restarted agent thus takes over its dead predecessor's connection at once
(ROUTER_HANDOVER), while an agent of the same name on another host (or state directory) is
another peer, which the broker refuses while we live (Disconnect `refused`). A refused agent
says so, sends no beats, and tries again with the reconnect's backoff.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import zmq

from luzia import __version__, keys, protocol
from luzia.agents import credits, metrics
from luzia.config import Config
from luzia.errors import ProtocolError

log = logging.getLogger(__name__)

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 32.0
MACHINE_ID = ("/etc/machine-id", "/var/lib/dbus/machine-id")


def instance_token(home: str) -> str:
    """This host and state directory, hashed: what tells a restart of this agent (same
    token) from another agent under the same name (another host, another state directory)."""
    machine = ""
    for path in MACHINE_ID:
        try:
            machine = Path(path).read_text().strip()
        except OSError:
            continue
        if machine:
            break
    machine = machine or socket.getfqdn()    # no machine id: the host's full name
    place = os.path.realpath(home)
    return hashlib.sha256(f"{machine}\0{place}".encode()).hexdigest()[:16]


class Holder(Protocol):
    """What the session tells the broker about the jobs: held.HeldJobs."""

    def for_hello(self) -> list[protocol.HeldJob]: ...
    def for_beat(self) -> list[str]: ...
    def degraded(self) -> str: ...


class BrokerSession:
    """One connection to the broker at a time; the worker's tick beats and reconnects."""

    def __init__(self, cfg: Config, ctx: zmq.Context, poller: zmq.Poller, holder: Holder,
                 gpus: metrics.Gpus, beat_extra: Callable[[], dict[str, Any]] = dict) -> None:
        self.cfg = cfg
        self.name = cfg.agent.name
        self.instance = instance_token(cfg.home)
        self.ctx = ctx
        self.poller = poller
        self.holder = holder
        self.gpus = gpus
        self.beat_extra = beat_extra      # more heartbeat fields (the workspaces')
        self.credits = credits.AdaptiveSlots(cfg)
        self.curve = keys.client_keys(cfg, cfg.endpoints.agents)
        self.interval = cfg.broker.heartbeat_interval
        self.liveness = cfg.broker.liveness
        self.sock: zmq.Socket | None = None
        self.cpu: float | None = None
        self.backoff = BACKOFF_FIRST
        self.reconnect_at = 0.0
        self.silence = 0.0           # seconds spent listening since the broker last spoke
        self.next_beat = 0.0
        self.refused = ""            # why the broker refused our Hello ("" once welcomed)

    def connect(self) -> None:
        """A fresh DEALER (queued messages to a dead broker are dropped) and a Hello."""
        self.close()
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTING_ID, f"{self.name}/{self.instance}".encode())
        sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE)
        if self.curve is not None:
            self.curve.apply(sock)
        sock.connect(self.cfg.endpoints.agents)
        self.sock = sock
        self.poller.register(sock, zmq.POLLIN)
        self.silence = 0.0
        self.hello()

    def close(self) -> None:
        if self.sock is not None and not self.sock.closed:
            self.poller.unregister(self.sock)
            self.sock.close(0)

    def hello(self) -> None:
        held = self.holder.for_hello()
        if len(held) > protocol.MAX_LIST:
            log.warning("holding %d jobs; only %d fit in a Hello", len(held), protocol.MAX_LIST)
            held = held[:protocol.MAX_LIST]
        self.send(protocol.Hello(name=self.name, slots=self.credits.slots,
                                 capabilities=list(self.cfg.agent.capabilities),
                                 tags=list(self.cfg.agent.tags), held=held, pid=os.getpid(),
                                 protocol=protocol.PROTOCOL, version=__version__,
                                 instance=self.instance, accounts=sorted(self.cfg.accounts)))
        log.info("hello to %s as %s: slots=%d capabilities=%s held=%d", self.cfg.endpoints.agents,
                 self.name, self.credits.slots, ",".join(self.cfg.agent.capabilities), len(held))

    def send(self, msg: protocol.Message) -> None:
        assert self.sock is not None    # connected from the Worker's start to its close
        try:
            self.sock.send_multipart(protocol.encode(msg), zmq.NOBLOCK)
        except zmq.Again:  # the broker is gone and the queue is full; heartbeats will retry
            log.debug("broker queue full; %s not sent", type(msg).__name__)

    # receiving --------------------------------------------------------------------------
    def listened(self, seconds: float, ready: bool) -> None:
        """A poll of `seconds`; `ready`: the broker's socket had something to read."""
        if not ready:
            self.silence += seconds

    def receive(self, batch: int) -> list[protocol.Message]:
        """The broker's messages waiting now (at most `batch`); bad frames are dropped."""
        out: list[protocol.Message] = []
        assert self.sock is not None
        for _ in range(batch):
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            self.silence = 0.0
            try:
                msg = protocol.decode(frames, expect=protocol.TO_AGENT)
            except ProtocolError as exc:
                log.warning("dropped bad frame from broker: %s", exc)
                continue
            if not isinstance(msg, protocol.Disconnect):   # a refusal keeps the backoff growing
                self.backoff = BACKOFF_FIRST
            out.append(msg)
        return out

    def welcome(self, msg: protocol.Welcome) -> None:
        self.interval, self.liveness = msg.heartbeat_interval, msg.liveness
        self.next_beat = 0.0
        if self.refused:
            log.info("the broker takes this agent as %s now", self.name)
        self.refused = ""
        log.info("welcomed by the broker (Luzia %s, protocol %d): heartbeat %.2fs, adopted %d, "
                 "dropped %d", msg.version or "?", msg.protocol, self.interval, len(msg.adopt),
                 len(msg.drop))

    def disconnected(self, msg: protocol.Disconnect) -> None:
        """The broker does not know us (say Hello again), or refuses us: another live agent
        holds our name, or it does not serve our protocol (it may be rolled back, or its
        broker.min_protocol lowered). Then later, not at once: our silence reconnects with
        the backoff; the jobs here keep running meanwhile."""
        if not msg.refused:
            log.info("broker asked for a new hello: %s", msg.reason)
            self.hello()
            return
        if not self.refused:
            log.error("refused by the broker at %s: %s; trying again every %.0fs at most (no "
                      "new jobs meanwhile; the jobs here keep running)", self.cfg.endpoints.agents,
                      msg.reason.removeprefix("refused: "), BACKOFF_MAX)
        else:
            log.warning("still refused by the broker: %s", msg.reason)
        self.refused = msg.reason

    # periodic ---------------------------------------------------------------------------
    def reconnect_if_silent(self, now: float) -> None:
        if self.silence > self.liveness * self.interval and now >= self.reconnect_at:
            log.warning("broker silent for %.1fs; reconnecting (next try in %.0fs at the "
                        "earliest)%s", self.silence, self.backoff,
                        keys.silence_hint(self.cfg, self.cfg.endpoints.agents))
            self.reconnect_at = now + self.backoff
            self.backoff = min(BACKOFF_MAX, self.backoff * 2)
            self.connect()

    def beat_if_due(self, now: float) -> None:
        if now >= self.next_beat and not self.refused:   # a refused agent's beat asks for Hello
            self.next_beat = now + self.interval
            self.beat()

    def beat(self) -> None:
        cpu, mem = metrics.load()
        # smoothed: one busy beat must not push the host over its ceiling
        self.cpu = cpu = cpu if self.cpu is None else 0.7 * self.cpu + 0.3 * cpu
        gpu = self.gpus.read()
        self.send(protocol.Heartbeat(cpu=cpu, memory=mem, gpu_memory=gpu.memory,
                                     gpu_util=gpu.util, gpu_free_gb=gpu.free_gb,
                                     running=self.holder.for_beat(),
                                     slots=self.credits.update(gpu),
                                     degraded=self.holder.degraded()[:protocol.MAX_LINE],
                                     **self.beat_extra()))
