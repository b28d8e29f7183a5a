"""The broker's view of its agents: identity, credits, load, liveness."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

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

    @property
    def live(self) -> bool:
        return self.state is not AgentState.DEAD

    def to_dict(self, now: float, load: float) -> dict[str, Any]:
        """The agent object of the control protocol (docs/PROTOCOL.md)."""
        return {"name": self.name, "state": self.state.value, "slots": self.slots,
                "running": len(self.jobs), "jobs": sorted(self.jobs),
                "capabilities": list(self.capabilities), "tags": list(self.tags),
                "cpu": self.cpu, "memory": self.memory, "load": load,
                "last_seen": round(max(0.0, now - self.last_seen), 3), "pid": self.pid,
                "gpu_memory": self.gpu_memory, "gpu_util": self.gpu_util,
                "gpu_free_gb": self.gpu_free_gb, "gpu_total_gb": self.gpu_total_gb,
                "gpu_reserved_gb": self.gpu_reserved_gb, "draining": self.draining}


class Fleet:
    """Agents by name and by ZeroMQ identity."""

    def __init__(self) -> None:
        self.by_name: dict[str, Agent] = {}
        self.by_identity: dict[bytes, Agent] = {}

    def join(self, agent: Agent) -> Agent | None:
        """Register `agent`; returns the record it replaces (same name), if any."""
        old = self.by_name.get(agent.name)
        if old is not None:
            self.by_identity.pop(old.identity, None)
            agent.jobs = old.jobs
        self.by_name[agent.name] = agent
        self.by_identity[agent.identity] = agent
        return old

    def get(self, name: str) -> Agent | None:
        return self.by_name.get(name)

    def __iter__(self):
        return iter(list(self.by_name.values()))

    def __len__(self) -> int:
        return len(self.by_name)
