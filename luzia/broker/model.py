"""The broker's in-memory model, as the code that changes it sees it.

The `Broker` (server.py) owns sockets, the loop and the commit; everything a turn decides
— the job edges (lifecycle.py), the agent protocol (agents.py), the control ops (ops/) —
works on a `Model`: the unfinished jobs, the store, the scheduler, the fleet, and the
`Outbox` of what to send once the turn's writes are committed. Handlers never see a socket.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from luzia import protocol, rpc
from luzia.broker.accounts import Accounts
from luzia.broker.budgets import Budgets
from luzia.broker.fleet import Fleet
from luzia.broker.job import Job
from luzia.broker.scheduler import Scheduler
from luzia.broker.store import Store
from luzia.config import Config


class Outbox:
    """What a turn sends after its commit: messages to agents, replies to control clients,
    events to publish, spool files to remove (acknowledged = durable first)."""

    def __init__(self) -> None:
        self.to_agents: list[list[bytes]] = []
        self.replies: list[list[bytes]] = []
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.unspool: list[str] = []      # job ids whose spool files go once committed
        self.protocols: dict[bytes, int] = {}   # each agent's protocol, as its Hello said

    def send(self, identity: bytes, msg: protocol.Message) -> None:
        """A message to the agent whose ROUTER identity is `identity`, in the fields its
        protocol knows."""
        peer = self.protocols.get(identity, protocol.PROTOCOL)
        self.to_agents.append([identity, *protocol.encode(msg, peer)])

    def reply(self, identity: bytes, msg: protocol.Reply) -> None:
        self.replies.append([identity, *protocol.encode(msg)])

    def publish(self, job: Job, name: str | None = None) -> None:
        """The job's event, `job.<state>` (or `job.<name>`), with its summary."""
        self.events.append((f"job.{name or job.state.value}", job.summary()))

    def publish_agent(self, state: str, data: dict[str, Any]) -> None:
        self.events.append((f"agent.{state}", data))


@dataclass
class LogWait:
    """A logs.read whose reply waits for the agent's LogChunk (or its deadline)."""

    identity: bytes
    req: int
    job_id: str
    deadline: float


class LogWaits:
    """The logs.read requests waiting for an agent, by the token sent in the LogRequest."""

    def __init__(self) -> None:
        self._by_token: dict[int, LogWait] = {}
        self._tokens = itertools.count(1)

    def add(self, wait: LogWait) -> int:
        token = next(self._tokens)
        self._by_token[token] = wait
        return token

    def pop(self, token: int) -> LogWait | None:
        return self._by_token.pop(token, None)

    def expired(self, now: float) -> list[LogWait]:
        """The waits past their deadline, removed."""
        due = [t for t, w in self._by_token.items() if w.deadline <= now]
        return [self._by_token.pop(t) for t in due]


class Model(Protocol):
    """What a handler may read and change. `BrokerModel` is the broker's; a test may
    build its own."""

    cfg: Config
    store: Store
    sched: Scheduler
    fleet: Fleet
    out: Outbox
    jobs: dict[str, Job]              # every unfinished job, by id
    stopping: dict[str, str]          # held jobs being stopped -> the critical job they make
                                      # room for ("": an operator's cancel)
    retry_at: list[tuple[float, str]]   # heap of (monotonic due, job id): retries in backoff
    resume_at: list[tuple[float, str]]  # heap of (unix time, job id): paused jobs' resets
    budgets: Budgets                  # cost accounting and the budgets' blocks
    accounts: Accounts                # provider accounts' usage limits, fleet-wide
    log_waits: LogWaits
    counters: dict[str, int]          # submissions, duplicates, rejections since start
    bad: dict[str, rpc.BadFrames]     # frames dropped, per socket
    started: float                    # time.monotonic() of the broker's start
    dirty: bool                       # something may be schedulable: run the scheduler this turn
    discards: dict[str, set[str]]     # agent -> discarded workspaces it has still to remove


@dataclass(eq=False)
class BrokerModel:
    """The broker's model (the `Model` protocol), built empty and filled by `Broker`."""

    cfg: Config
    store: Store
    sched: Scheduler
    fleet: Fleet
    out: Outbox = field(default_factory=Outbox)
    jobs: dict[str, Job] = field(default_factory=dict)
    stopping: dict[str, str] = field(default_factory=dict)
    retry_at: list[tuple[float, str]] = field(default_factory=list)
    resume_at: list[tuple[float, str]] = field(default_factory=list)
    budgets: Budgets = field(init=False)
    accounts: Accounts = field(init=False)
    log_waits: LogWaits = field(default_factory=LogWaits)
    counters: dict[str, int] = field(default_factory=lambda: {
        "submissions": 0, "duplicates": 0, "rejections": 0})
    bad: dict[str, rpc.BadFrames] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    dirty: bool = True
    discards: dict[str, set[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.budgets = Budgets(self.cfg, self.store, self.sched)
        self.accounts = Accounts(self.store, self.fleet)
