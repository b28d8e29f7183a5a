"""Prometheus metrics of the broker (prometheus-client), off unless `broker.metrics_port`
is set; served on `broker.metrics_host` (127.0.0.1 by default) at /metrics.

The HTTP server runs in prometheus-client's own thread, so it never reads the broker's
model: the broker's loop copies what is shown into the metrics once a second (`tick`) and
times each scheduling decision as it makes it (`timed`, the pick the broker calls). The
metric objects carry their own locks.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from luzia.broker.model import Model
from luzia.config import BrokerConfig
from luzia.errors import ConfigError
from luzia.states import JobState, Priority

log = logging.getLogger(__name__)

REFRESH = 1.0     # seconds between copies of the broker's state into the metrics
DECISION_BUCKETS = (1e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.1)


class BrokerMetrics:
    """The broker's metric families in a private registry, and the server that shows them."""

    def __init__(self, host: str, port: int) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs = Gauge("luzia_jobs", "Jobs in the store by state", ["state"], registry=r)
        self.queue = Gauge("luzia_queue_depth", "Pending jobs by priority", ["priority"], registry=r)
        self.submissions = Counter("luzia_submissions", "Submissions taken", registry=r)
        self.rejections = Counter("luzia_rejections", "Submissions rejected", registry=r)
        self.duplicates = Counter("luzia_duplicate_submissions", "Repeated submissions ignored",
                                  registry=r)
        self.bad_frames = Counter("luzia_bad_frames", "Frames dropped as malformed", ["socket"],
                                  registry=r)
        self.decisions = Histogram("luzia_decision_seconds", "Time of one scheduling decision",
                                   buckets=DECISION_BUCKETS, registry=r)
        self.load = Gauge("luzia_agent_load", "Agent load score (0..1)", ["agent"], registry=r)
        self.slots = Gauge("luzia_agent_slots", "Agent slots (capacity credits)", ["agent"], registry=r)
        self.running = Gauge("luzia_agent_running", "Jobs holding a slot on the agent", ["agent"],
                             registry=r)
        self.up = Gauge("luzia_agent_up", "1 if the agent is beating, 0 if not", ["agent"], registry=r)
        # agent-aware jobs (docs/AGENTS.md): what the agents' output adapters reported
        self.cost = Counter("luzia_agent_cost_usd", "USD the agents reported spending", registry=r)
        self.tokens = Counter("luzia_agent_tokens", "Tokens the agents reported", ["kind"],
                              registry=r)
        self.pauses = Counter("luzia_job_pauses", "Jobs paused on a provider's usage limit",
                              registry=r)
        self._seen: dict[str, float] = {}
        self._next = 0.0
        self._agents: set[str] = set()
        self.server = self._serve(host, port)

    def _serve(self, host: str, port: int) -> Any:
        from prometheus_client import start_http_server
        try:
            server, _ = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}); "
                              "choose another broker.metrics_port") from None
        log.info("metrics on http://%s:%d/metrics", host, port)
        return server

    def timed(self, decide: Callable[..., Any]) -> Callable[..., Any]:
        """`decide` (the scheduler's pick) with each call's duration observed."""
        @functools.wraps(decide)
        def timed_decide(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return decide(*args, **kwargs)
            finally:
                self.decisions.observe(time.perf_counter() - start)
        return timed_decide

    def tick(self, m: Model, now: float) -> None:
        """Copy the broker's state into the metrics, at most once per REFRESH."""
        if now < self._next:
            return
        self._next = now + REFRESH
        counts = m.store.counts()
        for state in JobState:
            self.jobs.labels(state.value).set(counts.get(state.value, 0))
        depth = m.sched.pending_by_priority()
        for p in Priority:
            self.queue.labels(p.label).set(depth.get(int(p), 0))
        self._count(self.submissions, "submissions", m.counters["submissions"])
        self._count(self.rejections, "rejections", m.counters["rejections"])
        self._count(self.duplicates, "duplicates", m.counters["duplicates"])
        for socket_name, bad in m.bad.items():
            self._count(self.bad_frames.labels(socket_name), f"bad:{socket_name}", bad.count)
        totals = m.budgets.totals
        self._count(self.cost, "cost", totals.cost_usd)
        self._count(self.pauses, "pauses", totals.pauses)
        for kind in ("tokens_in", "tokens_out", "cache_read", "cache_write"):
            self._count(self.tokens.labels(kind), kind, getattr(totals, kind))
        self._agents_now(m)

    def _count(self, counter: Any, key: str, total: float) -> None:
        """Advance a counter to the broker's running total."""
        grown = total - self._seen.get(key, 0)
        if grown > 0:
            counter.inc(grown)
        self._seen[key] = total

    def _agents_now(self, m: Model) -> None:
        names = set()
        for agent in m.fleet:
            names.add(agent.name)
            self.load.labels(agent.name).set(m.sched.agent_score(agent.name))
            self.slots.labels(agent.name).set(agent.slots)
            self.running.labels(agent.name).set(len(agent.jobs))
            self.up.labels(agent.name).set(1 if agent.live else 0)
        for gone in self._agents - names:
            for family in (self.load, self.slots, self.running, self.up):
                family.remove(gone)
        self._agents = names

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(cfg: BrokerConfig) -> BrokerMetrics | None:
    """The broker's metrics, served, when configured (broker.metrics_port); else None."""
    if not cfg.metrics_port:
        return None
    return BrokerMetrics(cfg.metrics_host, cfg.metrics_port)
