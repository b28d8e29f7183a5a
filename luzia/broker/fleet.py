"""The broker's view of its agents: identity, credits, load, liveness, drains.

`Fleet` keeps each agent's record and the scheduler's picture of it in step: every
change of an agent's credits, load, liveness or drain goes through one method here.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from luzia.broker import gpu
from luzia.broker.rules import SchedAgent, SchedJob
from luzia.broker.scheduler import Scheduler
from luzia.broker.versions import Refused
from luzia.protocol import Heartbeat
from luzia.states import AgentState

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Agent:
    """One connected (or recently connected) agent."""

    name: str
    identity: bytes
    slots: int
    capabilities: list[str]
    tags: list[str] = field(default_factory=list)
    pid: int = 0
    instance: str = ""               # its host and state directory, hashed ("" : not told)
    state: AgentState = AgentState.LIVE
    last_seen: float = 0.0           # time.monotonic() of its last message
    dead_since: float | None = None
    cpu: float = 0.0
    memory: float = 0.0
    gpu_memory: float = -1.0
    gpu_util: float = -1.0
    gpu_free_gb: float = -1.0
    gpu_total_gb: float = -1.0       # derived from the beat's fraction used and GB free
    gpu_reserved_gb: float = 0.0     # what the jobs placed on it need (luzia/broker/gpu.py)
    jobs: set[str] = field(default_factory=set)      # jobs the broker placed on it
    reported: set[str] = field(default_factory=set)  # jobs its last heartbeat said it holds
    ended: set[str] = field(default_factory=set)     # Dones taken since our last heartbeat to it
    draining: bool = False           # an operator's `luzia agents drain`: no new jobs
    degraded: str = ""               # why it takes no new jobs by itself (its disk is full)
    accounts: list[str] = field(default_factory=list)   # its [accounts.*] (accounts.py)
    limited_until: float = 0.0       # all its accounts are limited until then (unix time)
    limited: str = ""                # which: "account team-a"
    protocol: int = 1                # as its Hello said (docs/PROTOCOL.md, "Versions")
    version: str = ""                # its Luzia release ("": the first release did not say)
    workspace_bytes: int = -1        # disk its worktrees and mirrors use (-1: not reported)
    workspaces: int = 0              # worktrees on it

    @property
    def live(self) -> bool:
        return self.state is not AgentState.DEAD

    def beat(self) -> Heartbeat:
        """Our heartbeat to it: the jobs we hold there, which acknowledges every Done since
        the last one (docs/PROTOCOL.md)."""
        self.ended.clear()
        return Heartbeat(running=sorted(self.jobs))

    def to_dict(self, now: float, load: float) -> dict[str, Any]:
        """The agent object of the control protocol (docs/PROTOCOL.md)."""
        return {"name": self.name, "state": self.state.value, "slots": self.slots,
                "running": len(self.jobs), "jobs": sorted(self.jobs),
                "capabilities": list(self.capabilities), "tags": list(self.tags),
                "cpu": self.cpu, "memory": self.memory, "load": load,
                "last_seen": round(max(0.0, now - self.last_seen), 3), "pid": self.pid,
                "gpu_memory": self.gpu_memory, "gpu_util": self.gpu_util,
                "gpu_free_gb": self.gpu_free_gb, "gpu_total_gb": self.gpu_total_gb,
                "gpu_reserved_gb": self.gpu_reserved_gb, "draining": self.draining,
                "degraded": self.degraded, "protocol": self.protocol,
                "version": self.version, "accounts": list(self.accounts),
                "limited_until": self.limited_until or None,
                "workspace_bytes": self.workspace_bytes, "workspaces": self.workspaces}


@dataclass(slots=True)
class Clash:
    """A second agent under a live agent's name, refused (issue 17): who, and when last."""

    pid: int
    instance: str
    at: float                        # time.monotonic() of the last refusal
    count: int = 1

    def to_dict(self, now: float) -> dict[str, Any]:
        return {"pid": self.pid, "instance": self.instance, "count": self.count,
                "ago": round(max(0.0, now - self.at), 3)}


CLASH_MEMORY = 120.0   # seconds a refusal is shown (a refused agent retries every 32 s at most)


class Fleet:
    """Agents by name and by ZeroMQ identity, in step with the scheduler's `SchedAgent`s."""

    def __init__(self, sched: Scheduler, drained: Iterable[str] = ()) -> None:
        self.sched = sched
        self.by_name: dict[str, Agent] = {}
        self.by_identity: dict[bytes, Agent] = {}
        self.drained = set(drained)     # an operator's drains: kept over reconnects and restarts
        self.clashes: dict[str, Clash] = {}   # by name: the last second agent refused under it
        self.outdated: dict[bytes, Refused] = {}   # by identity: agents whose protocol is not served

    def get(self, name: str) -> Agent | None:
        return self.by_name.get(name)

    def __iter__(self) -> Iterator[Agent]:
        return iter(list(self.by_name.values()))

    def __len__(self) -> int:
        return len(self.by_name)

    # liveness -------------------------------------------------------------------
    def join(self, agent: Agent) -> Agent | None:
        """A Hello: register `agent` (its drain as the operator left it) and offer it to the
        scheduler; returns the record it replaces (same name), if any. A refusal of an older
        release under its name is over (the upgraded agent has another identity: issue 17)."""
        for identity in [i for i, r in self.outdated.items() if r.name == agent.name]:
            del self.outdated[identity]
        old = self.by_name.get(agent.name)
        if old is not None:
            self.by_identity.pop(old.identity, None)
            agent.jobs = old.jobs
        self.by_name[agent.name] = agent
        self.by_identity[agent.identity] = agent
        agent.draining = agent.name in self.drained
        self.sched.agent_up(self._sched_agent(agent))
        return old

    def mark_outdated(self, identity: bytes, refused: Refused) -> Agent | None:
        """A Hello the broker does not serve; the record of that agent's earlier self, which
        no longer speaks for it (its frames are dropped from now on), if it has one."""
        self.outdated[identity] = refused
        return self.by_identity.pop(identity, None)

    def holder(self, name: str, identity: bytes, instance: str) -> Agent | None:
        """The live agent that holds `name` for another host or state directory than the
        one saying Hello (`instance`), if any: that Hello must be refused. An agent that
        never told its instance (an older release) is not judged."""
        agent = self.by_name.get(name)
        if (agent is None or not agent.live or not agent.identity or agent.identity == identity
                or not agent.instance or not instance or agent.instance == instance):
            return None
        return agent

    def refused(self, name: str, pid: int, instance: str, now: float) -> Clash:
        """Remember a refused second agent under `name` (shown by `agents status`)."""
        clash = self.clashes.get(name)
        if clash is None or clash.pid != pid or clash.instance != instance:
            clash = self.clashes[name] = Clash(pid=pid, instance=instance, at=now, count=0)
        clash.at, clash.count = now, clash.count + 1
        return clash

    def clash(self, name: str, now: float) -> dict[str, Any] | None:
        """The refusal under `name` seen within CLASH_MEMORY seconds, as the control protocol shows it."""
        clash = self.clashes.get(name)
        if clash is None or now - clash.at > CLASH_MEMORY:
            return None
        return clash.to_dict(now)

    def bury(self, agent: Agent, now: float) -> None:
        """It missed its heartbeats: no new work for it; its jobs keep their credits."""
        agent.state = AgentState.DEAD
        agent.dead_since = now
        self.sched.agent_down(agent.name)

    def revive(self, agent: Agent) -> None:
        """A dead agent is beating again."""
        agent.state = AgentState.LIVE
        agent.dead_since = None
        self.sched.agent_up(self._sched_agent(agent))

    def forget(self, agent: Agent) -> None:
        """An operator's `luzia agents forget`: a dead agent holding no job leaves the fleet
        (and its drain with it); should it say Hello again it joins as a new one."""
        self.by_name.pop(agent.name, None)
        if self.by_identity.get(agent.identity) is agent:
            del self.by_identity[agent.identity]
        self.drained = self.drained - {agent.name}
        self.sched.agent_remove(agent.name)

    def drain(self, agent: Agent, draining: bool) -> None:
        """An operator's drain (or undrain); the caller saves `drained` with the turn."""
        agent.draining = draining
        self.sched.set_draining(agent.name, draining or bool(agent.degraded))
        self.drained = self.drained | {agent.name} if draining else self.drained - {agent.name}

    def set_limited(self, agent: Agent, until: float, what: str) -> None:
        """Its accounts' usage limits (accounts.py): no new job for it until `until` (0: free)."""
        if (agent.limited_until, agent.limited) != (until, what):
            agent.limited_until, agent.limited = until, what
            self.sched.set_limited(agent.name, until, what)

    def degrade(self, agent: Agent, reason: str) -> None:
        """The agent says it takes no new work (reason), or again takes it (""): placed as
        if drained meanwhile; an operator's drain is kept apart and outlives it."""
        if reason == agent.degraded:
            return
        if reason:
            log.warning("agent %s takes no new work: %s", agent.name, reason)
        else:
            log.info("agent %s takes work again (was: %s)", agent.name, agent.degraded)
        agent.degraded = reason
        self.sched.set_draining(agent.name, agent.draining or bool(reason))

    # credits and load -----------------------------------------------------------------
    def hold(self, agent: Agent, job_id: str) -> None:
        """The scheduler placed `job_id` on `agent`: it takes one of its credits."""
        agent.jobs.add(job_id)
        self.load(agent)

    def release(self, job_id: str, host: str) -> None:
        """`job_id` no longer holds a credit on `host` (ended, requeued)."""
        self.sched.release(job_id)
        agent = self.by_name.get(host)
        if agent is not None:
            agent.jobs.discard(job_id)
            self.load(agent)

    def set_slots(self, agent: Agent, slots: int) -> None:
        """The agent changed its credits (adaptive credits): schedule with the new count."""
        log.info("agent %s: credits %d -> %d", agent.name, agent.slots, slots)
        agent.slots = slots
        self.sched.agent_up(self._sched_agent(agent))

    def load(self, agent: Agent) -> None:
        """The scheduler learns the agent's load as its record has it now."""
        self.sched.agent_load(agent.name, agent.cpu, agent.memory, self._gpu_offer(agent))

    def restore(self, job: SchedJob, host: str, since: float) -> None:
        """After a broker restart: `job` holds a credit on `host`, which has not said Hello.
        Not lost yet, only not heard from: its jobs keep their users' locks until it says
        Hello or `lost_grace` requeues them; it takes no new work meanwhile."""
        agent = self.by_name.get(host)
        if agent is None:
            now = time.monotonic()
            agent = Agent(name=host, identity=b"", slots=1, capabilities=[],
                          state=AgentState.DEAD, dead_since=now, last_seen=now)
            self.by_name[host] = agent
        agent.jobs.add(job.id)
        agent.slots = max(agent.slots, len(agent.jobs))
        self.sched.place(job, host, since=since)
        self.sched.agent_up(replace(self._sched_agent(agent), live=True, draining=True))

    def _gpu_offer(self, agent: Agent) -> float:
        """The GPU memory `agent` offers new work: measured free, less what its jobs reserve."""
        needs = self.sched.gpu_needs(agent.name)
        agent.gpu_reserved_gb = math.fsum(needs)
        return gpu.offer(agent.gpu_free_gb, agent.gpu_total_gb, needs)

    def _sched_agent(self, agent: Agent) -> SchedAgent:
        return SchedAgent(name=agent.name, slots=agent.slots,
                          capabilities=frozenset(agent.capabilities), cpu=agent.cpu,
                          memory=agent.memory, gpu_free_gb=self._gpu_offer(agent),
                          live=agent.live, draining=agent.draining or bool(agent.degraded),
                          limited_until=agent.limited_until, limited=agent.limited)
