"""Drive a real Broker in the test's own thread: real sockets, turns run by hand; or only
its model (`make_model`), for the job edges and the control ops without sockets."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import zmq

from luzia import config, protocol
from luzia.broker.fleet import Fleet
from luzia.broker.model import BrokerModel
from luzia.broker.scheduler import Scheduler
from luzia.broker.server import Broker
from luzia.broker.store import Store
from luzia.ids import new_job_id
from luzia.states import JobState

M = TypeVar("M", bound=protocol.Message)


# Missed beats before a fake agent counts as dead. A fake agent beats only between the broker
# turns the test runs, so a test process descheduled on a loaded box looks like an agent
# gone silent: 100 beats of 0.05 s (5 s) is a window no such pause fills. A test of a
# dying agent passes DIES_FAST (0.15 s) and stops that agent's beats for real.
PATIENT = 100
DIES_FAST = 3


def make_broker(home, extra: str = "", liveness: int = PATIENT, lost_grace: float = 0.5) -> Broker:
    """A broker with fast beats and sweeps; `extra` is more config (in [broker] until it
    opens another table)."""
    (home / "luzia.toml").write_text(
        f'home = "{home}"\n[broker]\nheartbeat_interval = 0.05\nliveness = {liveness}\n'
        f'lost_grace = {lost_grace}\nspool_sweep = 0.05\n{extra}\n')
    cfg = config.load(env={"LUZIA_CONFIG": str(home / "luzia.toml")})
    return Broker(cfg)


def make_model(cfg: config.Config | None = None) -> BrokerModel:
    """The broker's model with no sockets and no files: SQLite in memory, the real
    scheduler and fleet. Close its store when done."""
    cfg = cfg or config.Config()
    sched = Scheduler(cfg.scheduler)
    return BrokerModel(cfg, Store(":memory:"), sched, Fleet(sched))


def pump(b: Broker, until: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Run broker turns until `until()` is truthy (the broker's own loop, stepped by the test)."""
    deadline = time.monotonic() + timeout
    while True:
        b.turn(0.005)
        value = until()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {until}")


def beating(agents: list[FakeAgent], until: Callable[[], Any]) -> Callable[[], Any]:
    """A condition for pump() that also lets every fake agent beat between broker turns."""
    def check() -> Any:
        for agent in agents:
            agent.on_turn()
        return until()
    return check


def job_state(b: Broker, job_id: str) -> JobState | None:
    """The job's state, unfinished or stored; None if the broker has no such job."""
    job = b.model.jobs.get(job_id) or b.model.store.get(job_id)
    return job.state if job else None


def spec(**kw: Any) -> protocol.JobSpec:
    base: dict[str, Any] = dict(id=new_job_id(), project="demo", task="hello", user="alice",
                                type="code", submitted_at=time.time())
    base.update(kw)
    return protocol.JobSpec(**base)


class Peer:
    """A socket in the test speaking the protocol."""

    def __init__(self, ctx: zmq.Context, kind: int, endpoint: str, identity: bytes | None = None):
        self.sock = ctx.socket(kind)
        self.sock.setsockopt(zmq.LINGER, 0)
        if identity:
            self.sock.setsockopt(zmq.ROUTING_ID, identity)
        self.sock.connect(endpoint)

    def send(self, msg: protocol.Message) -> None:
        self.sock.send_multipart(protocol.encode(msg))

    def send_raw(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames)

    def on_turn(self) -> None:
        """Called between broker turns while waiting (a fake agent beats here)."""

    def seen(self, msg: protocol.Message) -> None:
        """Called for every message received."""

    def recv(self, b: Broker, kind: type[M] = protocol.Message,  # type: ignore[assignment]
             timeout: float = 5.0) -> M:
        """Pump the broker until a message (of `kind`: any by default) arrives here."""
        got: list[M] = []

        def arrived() -> bool:
            self.on_turn()
            while self.sock.poll(0):
                msg = protocol.decode(self.sock.recv_multipart())
                self.seen(msg)
                if isinstance(msg, kind):
                    got.append(msg)
                    return True
            return False
        pump(b, arrived, timeout)
        return got[0]

    def drain(self) -> list[protocol.Message]:
        out = []
        while self.sock.poll(0):
            out.append(protocol.decode(self.sock.recv_multipart()))
        return out

    def close(self) -> None:
        self.sock.close(0)


class FakeAgent(Peer):
    def __init__(self, ctx, b: Broker, name: str = "gpu1", slots: int = 1,
                 capabilities=("code", "text", "reasoning"), held=()):
        super().__init__(ctx, zmq.DEALER, b.cfg.endpoints.agents, name.encode())
        self.name = name
        self.beating = True
        self.holding: set[str] = set()
        self.last_beat = 0.0
        self.send(protocol.Hello(name=name, slots=slots, capabilities=list(capabilities),
                                 held=list(held), protocol=protocol.PROTOCOL))
        self.welcome = self.recv(b, protocol.Welcome)

    def on_turn(self) -> None:
        if self.beating and time.monotonic() - self.last_beat > 0.03:
            self.last_beat = time.monotonic()
            self.beat()

    def seen(self, msg: protocol.Message) -> None:
        if isinstance(msg, protocol.Assign):
            self.holding.add(msg.job.id)

    def beat(self) -> None:
        self.send(protocol.Heartbeat(cpu=0.1, memory=0.2, running=sorted(self.holding)))

    def finish(self, job_id: str, attempt: int = 1, exit_code: int = 0, reason: str = "") -> None:
        self.holding.discard(job_id)
        self.send(protocol.Started(job_id=job_id, attempt=attempt))
        self.send(protocol.Done(job_id=job_id, attempt=attempt, exit_code=exit_code,
                                reason=reason, tail=["bye"]))


class Client(Peer):
    """A control client."""

    def __init__(self, ctx, b: Broker):
        super().__init__(ctx, zmq.DEALER, b.cfg.endpoints.control)
        self.n = 0

    def call(self, b: Broker, op: str, **args: Any) -> protocol.Reply:
        self.n += 1
        self.send(protocol.Request(req=self.n, op=op, args=args, protocol=protocol.PROTOCOL))
        reply = self.recv(b, protocol.Reply)
        assert isinstance(reply, protocol.Reply) and reply.req == self.n
        return reply
