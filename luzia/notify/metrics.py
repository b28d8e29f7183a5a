"""luzia-notify's Prometheus metrics: on when the broker's are (`broker.metrics_port`), on
`notify.metrics_port` (default: the broker's port + 1), at /metrics on broker.metrics_host.

Counters move as deliveries settle (the loop's thread); the pending gauge is copied from the
outbox every REFRESH seconds. prometheus-client serves them from its own thread.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from luzia.config import Config
from luzia.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

REFRESH = 5.0


class NotifyMetrics:
    def __init__(self, host: str, port: int) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        self.registry = r = CollectorRegistry()
        self.sent = Counter("luzia_notifications_sent", "Notifications a target took",
                            ["target"], registry=r)
        self.failed = Counter("luzia_notifications_failed",
                              "Notifications given up (not delivered within give_up_after)",
                              ["target"], registry=r)
        self.tries_failed = Counter("luzia_notification_tries_failed",
                                    "Delivery tries that failed (each is retried with backoff)",
                                    ["target"], registry=r)
        self.pending = Gauge("luzia_notifications_pending", "Notifications waiting to be sent",
                             ["target"], registry=r)
        self.seconds = Histogram("luzia_notification_seconds", "Time of one delivery try",
                                 ["target"], registry=r)
        self._next = 0.0
        from prometheus_client import start_http_server
        try:
            self.server, _ = start_http_server(port, addr=host, registry=r)
        except OSError as exc:
            raise ConfigError(f"cannot serve notifier metrics on {host}:{port} "
                              f"({exc.strerror or exc}); set notify.metrics_port") from None
        log.info("metrics on http://%s:%d/metrics", host, port)

    def settled(self, target: str, state: str, seconds: float, failed_try: bool) -> None:
        self.seconds.labels(target).observe(seconds)
        if failed_try:
            self.tries_failed.labels(target).inc()
        if state == "sent":
            self.sent.labels(target).inc()
        elif state == "failed":
            self.failed.labels(target).inc()

    def tick(self, counts: Callable[[], dict[str, Any]], targets: Iterable[str],
             now: float) -> None:
        """Refresh the pending gauges from the outbox's `counts()` at most every REFRESH s."""
        if now < self._next:
            return
        self._next = now + REFRESH
        found = counts()
        for target in targets:
            self.pending.labels(target).set((found.get(target) or {}).get("pending", 0))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def port_of(cfg: Config) -> int:
    """notify.metrics_port, else the broker's + 1 when the broker's metrics are on, else 0."""
    if cfg.notify.metrics_port:
        return cfg.notify.metrics_port
    return cfg.broker.metrics_port + 1 if cfg.broker.metrics_port else 0


def serve(cfg: Config) -> NotifyMetrics | None:
    port = port_of(cfg)
    return NotifyMetrics(cfg.broker.metrics_host, port) if port else None
