"""Which peers this broker serves: the protocol versions of agents and CLIs
(docs/PROTOCOL.md, "Versions"; docs/DEPLOY.md, "Upgrading").

An agent says its protocol in Hello and a CLI in each Request (absent: 1, the first
release). The broker serves every protocol from `broker.min_protocol` (by default
protocol.OLDEST) up, sends each agent only what its protocol knows (Outbox), and refuses
an older peer with one line that names both versions: an agent at Hello with
Disconnect(refused), which every release can read and log; a CLI with a Reply whose code
is `outdated`. A refused agent is listed by `agents.status` (health `refused`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from luzia import __version__, protocol
from luzia.config import Config
from luzia.errors import ConfigError

REFUSE_QUIET = 30.0     # seconds between two answers to a refused agent's Hellos


@dataclass
class Refused:
    """An agent the broker does not serve, as it last said Hello."""

    name: str
    protocol: int
    version: str
    pid: int
    why: str
    last_seen: float = field(default_factory=time.monotonic)
    answered: float = float("-inf")     # time.monotonic() of our last Disconnect to it

    def due(self, now: float) -> bool:
        """Answer this Hello? Once per REFUSE_QUIET: the first release says Hello again at
        once on a Disconnect, and would otherwise spin."""
        return now - self.answered >= REFUSE_QUIET

    def to_dict(self, now: float) -> dict[str, Any]:
        """Its row in agents.status: an agent object with health `refused`."""
        return {"name": self.name, "state": "refused", "health": "refused", "slots": 0,
                "running": 0, "jobs": [], "capabilities": [], "tags": [], "pid": self.pid,
                "last_seen": round(now - self.last_seen, 3),
                "heartbeat_age": round(now - self.last_seen, 3),
                "protocol": self.protocol, "version": self.version, "outdated": self.why}


def check(cfg: Config) -> None:
    """The broker's start: a `broker.min_protocol` it can serve."""
    oldest = cfg.broker.min_protocol
    if not protocol.OLDEST <= oldest <= protocol.PROTOCOL:
        raise ConfigError(f"broker.min_protocol = {oldest}: this release (Luzia {__version__}) "
                          f"speaks protocols {protocol.OLDEST} to {protocol.PROTOCOL}")


def agent_refusal(cfg: Config, hello: protocol.Hello) -> str:
    """Why this broker does not serve the agent ("" if it does)."""
    if hello.protocol >= cfg.broker.min_protocol:
        return ""
    release = f", Luzia {hello.version}" if hello.version else ""
    return (f"this agent is protocol version {hello.protocol}{release}, the broker "
            f"{_broker(cfg)}: upgrade the agent")


def cli_refusal(cfg: Config, req: protocol.Request) -> str:
    """Why this broker does not answer the CLI's request ("" if it does)."""
    if req.protocol >= cfg.broker.min_protocol:
        return ""
    return f"this CLI is protocol version {req.protocol}, the broker {_broker(cfg)}: upgrade the CLI"


def _broker(cfg: Config) -> str:
    return (f"{protocol.PROTOCOL} (Luzia {__version__}, serving protocol "
            f"{cfg.broker.min_protocol} and newer)")
