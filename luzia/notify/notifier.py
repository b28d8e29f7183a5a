"""luzia-notify's loop: one thread, one zmq.Poller over the broker's events (SUB), its own
health/status socket (ROUTER, `endpoints.notify`) and a wake-up pipe from the delivery
threads. Each turn: take what is ready, then `tick(now)`: read the broker's news into the
outbox (feed.py), hand due notifications to their targets' couriers within each target's
rate and backoff, give up what is too old, forget what is long done.

The broker never waits for us: we subscribe like `luzia top` and ask like the CLI.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from pathlib import Path
from typing import Any

import zmq

from luzia import __version__, keys, pidlock, protocol, rpc
from luzia.client import Control
from luzia.config import Config, ensure_private_dir, is_local
from luzia.errors import BadRequest, BrokerUnreachable, ConfigError, LuziaError, ProtocolError
from luzia.notify import metrics
from luzia.notify.courier import Backoff, Courier, Delivery, RateLimit, redacted, valid_url
from luzia.notify.events import Rules
from luzia.notify.feed import Feed
from luzia.notify.message import job_link
from luzia.notify.outbox import Outbox
from luzia.service import listen

log = logging.getLogger(__name__)

BROKER_TIMEOUT = 5.0      # seconds one request to the broker may take
BROKER_RETRY_MAX = 30.0   # the broker unreachable: ask again after 1 s, doubling to this
EVENTS_BATCH = 256        # PUB messages taken per turn
HOUSEKEEPING = 60.0       # seconds between give-ups and prunes
STOP_GRACE = 5.0          # at a stop, seconds to wait for deliveries in flight to report


class Notifier:
    """Construct with a config, then `run()`; `stop()` (SIGTERM) ends the loop."""

    def __init__(self, cfg: Config, ctx: zmq.Context | None = None) -> None:
        self.cfg = cfg
        self.ncfg = cfg.notify
        self.started = time.monotonic()
        ensure_private_dir(Path(cfg.home))
        ensure_private_dir(cfg.run_dir)
        self._lock = pidlock.hold(Path(cfg.home) / "notify.lock",
                                  f"another luzia-notify (pid {{pid}}) is running on {cfg.home}")
        self.outbox = Outbox(self.ncfg.db)
        self.rules = Rules(self.ncfg)
        self.backoff = Backoff(self.ncfg.retry_initial, self.ncfg.retry_max)
        self.results: queue.Queue[Delivery] = queue.Queue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.couriers = {name: Courier(name, url, self.results, self._wake)
                         for name, url in self.ncfg.targets.items()}
        self.limits = {name: RateLimit(self.ncfg.rate) for name in self.couriers}
        self.failures = {name: 0 for name in self.couriers}       # in a row, per target
        self.resume_at = {name: 0.0 for name in self.couriers}    # monotonic: backing off until
        self._stop_r, self._stop_w = os.pipe()    # written at stop(): nothing waits past it
        os.set_blocking(self._stop_w, False)
        self._own_ctx = ctx is None
        self.ctx = ctx or zmq.Context()
        self.broker = Control(cfg, timeout=BROKER_TIMEOUT, stop_fd=self._stop_r)
        self.feed = Feed(self.outbox, self.rules, self.broker, lambda: job_link(cfg))
        self.sub = self._subscribe()
        self.control = self._bind_control(cfg.endpoints.notify)
        self.bad_control = rpc.BadFrames(log, "the notify socket")
        self.poller = zmq.Poller()
        for sock in (self.sub, self.control):
            self.poller.register(sock, zmq.POLLIN)
        self.poller.register(self._wake_r, zmq.POLLIN)
        self.poller.register(self._stop_r, zmq.POLLIN)
        self.broker_state = "not asked yet"
        self.catch_up_at = 0.0            # monotonic: read the broker's news then
        self.broker_failures = 0
        self.reconcile_due = True         # flags and fleet states: after a start or an outage
        self.next_housekeeping = 0.0
        self.running = False
        self.stopping = False
        self.metrics = metrics.serve(cfg)
        for name, url in self.ncfg.targets.items():
            if not valid_url(url):
                log.error("target %s: %s is not an Apprise URL it knows; its notifications will "
                          "fail (luzia notify test %s)", name, redacted(url), name)
        log.info("luzia-notify %s: %d targets, %d rules, kinds %s; outbox %s", __version__,
                 len(self.couriers), len(self.rules.rules), ",".join(sorted(self.rules.kinds)),
                 self.ncfg.db)

    # set-up -------------------------------------------------------------------------------
    def _subscribe(self) -> zmq.Socket:
        sock = self.ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE + 64)
        sock.setsockopt(zmq.RCVHWM, 100_000)
        for prefix in (b"job.", b"agent.", b"queue."):
            sock.setsockopt(zmq.SUBSCRIBE, prefix)
        keys.secure_client(sock, self.cfg, self.cfg.endpoints.events)
        sock.connect(self.cfg.endpoints.events)
        return sock

    def _bind_control(self, endpoint: str) -> zmq.Socket:
        if not is_local(endpoint):       # it answers anyone who reaches it: this host only
            raise ConfigError(f"endpoints.notify must be ipc:// or tcp on loopback, not {endpoint}")
        sock = self.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, 65536)
        return listen(sock, endpoint, "notify")

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass          # the pipe is full of wake-ups already

    # loop -----------------------------------------------------------------------------------
    def run(self) -> None:
        self.running = True
        while self.running:
            self.turn()
        self.close()

    def stop(self) -> None:
        """From the signal handler: the loop ends after this turn, and a request to the broker
        in flight gives up now (a broker stopping beside us would make it wait the timeout)."""
        self.running = False
        self.stopping = True
        try:
            os.write(self._stop_w, b"x")
        except BlockingIOError:
            pass

    def turn(self, timeout: float | None = None) -> None:
        now = time.monotonic()
        if timeout is None:
            timeout = max(0.0, min(self.catch_up_at, now + 1.0) - now)
        ready = dict(self.poller.poll(int(timeout * 1000)))
        if self.sub in ready:
            self._on_events()
        if self.control in ready:
            for identity, req in rpc.requests(self.control, 64, self.bad_control):
                rpc.send(self.control, identity, rpc.answer(req, self.op), log)
        if self._wake_r in ready:
            try:
                os.read(self._wake_r, 4096)
            except BlockingIOError:
                pass
        self.tick(time.monotonic())

    def _on_events(self) -> None:
        for _ in range(EVENTS_BATCH):
            try:
                frames = self.sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                ev = protocol.decode_event(frames)
                if self.feed.on_event(ev.topic, ev.data):
                    self.catch_up_at = 0.0
            except ProtocolError as exc:
                log.warning("bad event dropped: %s", exc)
            except BrokerUnreachable as exc:
                self._broker_down(exc)
            except LuziaError as exc:      # the broker refused a detail: the event waits
                log.warning("event %s not taken: %s", frames[0][:64], exc)

    def tick(self, now: float) -> None:
        self._collect()
        if now >= self.catch_up_at:
            self._read_broker(now)
        wall = time.time()
        if now >= self.next_housekeeping:
            self.next_housekeeping = now + HOUSEKEEPING
            self._housekeeping(wall)
        self._dispatch(now, wall)
        if self.metrics:
            self.metrics.tick(self.outbox.counts, self.couriers, now)

    def _read_broker(self, now: float) -> None:
        try:
            more = self.feed.catch_up()
        except BrokerUnreachable as exc:
            self._broker_down(exc)
            return
        except LuziaError as exc:         # a malformed or refused answer: ask again later
            log.warning("reading the broker's events failed: %s", exc)
            self.catch_up_at = now + self.ncfg.poll
            return
        if self.reconcile_due:
            try:
                self.feed.reconcile()
                self.reconcile_due = False
            except LuziaError as exc:     # the jobs' ends still flow; this is tried next turn
                log.warning("reading the flags and the fleet's state failed: %s", exc)
        if self.broker_failures:
            log.info("the broker answers again")
        self.broker_failures = 0
        self.broker_state = "reachable"
        self.catch_up_at = now if more else now + self.ncfg.poll

    def _broker_down(self, exc: LuziaError) -> None:
        if self.stopping:      # a request given up at stop(): not an outage to tell of
            return
        self.broker_failures += 1
        delay = min(BROKER_RETRY_MAX, 2.0 ** (self.broker_failures - 1))
        if self.broker_failures == 1:
            log.warning("%s; asking again every %gs up to %gs (nothing is lost: the cursor waits)",
                        exc, delay, BROKER_RETRY_MAX)
        self.broker_state = f"unreachable: {exc}"
        self.reconcile_due = True
        self.catch_up_at = time.monotonic() + delay

    # delivery -------------------------------------------------------------------------------
    def _dispatch(self, now: float, wall: float) -> None:
        """Each idle target gets its oldest due notification, within its rate and backoff."""
        for name, courier in self.couriers.items():
            if courier.busy or now < self.resume_at[name] or self.limits[name].ready(now):
                continue
            notice = self.outbox.next_for(name, wall)
            if notice is None:
                continue
            self.limits[name].take(now)
            courier.send(notice)

    def _collect(self) -> None:
        while True:
            try:
                done = self.results.get_nowait()
            except queue.Empty:
                return
            self._settle(done)

    def _settle(self, done: Delivery) -> None:
        """A courier's report into the outbox: sent, or tried again later, or given up."""
        name, notice = done.target, done.notice
        self.couriers[name].busy = False
        wall = time.time()
        with self.outbox.transaction():
            if not done.error:
                self.outbox.sent(notice, wall)
            elif wall - notice.created >= self.ncfg.give_up_after:
                self.outbox.failed(notice, wall, done.error)
            else:
                self.outbox.retry(notice, wall + self.backoff.delay(notice.tries + 1), done.error)
        if self.metrics:
            self.metrics.settled(name, notice.state.value, done.seconds, bool(done.error))
        if not done.error:
            self.failures[name] = 0
            self.resume_at[name] = 0.0
            log.info("notification %s sent to %s (%.2fs)", notice.key, name, done.seconds)
            return
        self.failures[name] += 1
        delay = self.backoff.delay(self.failures[name])
        self.resume_at[name] = time.monotonic() + delay
        if notice.state.value == "failed":
            log.error("notification %s to %s FAILED after %d tries, given up: %s", notice.key,
                      name, notice.tries, done.error)
        else:
            log.warning("notification %s to %s failed (try %d): %s; %s waits %.1fs", notice.key,
                        name, notice.tries, done.error, name, delay)

    def _housekeeping(self, wall: float) -> None:
        """Give up what waited longer than give_up_after; forget what is long done."""
        with self.outbox.transaction():
            for notice in self.outbox.expired(wall - self.ncfg.give_up_after):
                if not self.couriers.get(notice.target) or not self.couriers[notice.target].busy:
                    self.outbox.failed(notice, wall, notice.error or "not delivered in time")
                    log.error("notification %s to %s FAILED: not delivered within %gs (%s)",
                              notice.key, notice.target, self.ncfg.give_up_after,
                              notice.error or "never tried")
            pruned = self.outbox.prune(wall - self.ncfg.keep_days * 86400)
        if pruned:
            log.info("forgot %d notifications older than %g days", pruned, self.ncfg.keep_days)

    # control socket ----------------------------------------------------------------------------
    def op(self, op: str, args: dict[str, Any]) -> Any:
        """ping → {pid, version, uptime, name}; status → what `luzia notify status` shows."""
        if op == "ping":
            return {"pid": os.getpid(), "version": __version__, "name": "notify",
                    "uptime": round(time.monotonic() - self.started, 3)}
        if op == "status":
            return self.status()
        raise BadRequest(f"unknown operation {op!r}; known: ping, status")

    def status(self) -> dict[str, Any]:
        counts = self.outbox.counts()
        now = time.monotonic()
        targets = []
        for name, courier in self.couriers.items():
            row = counts.get(name) or {}
            targets.append({
                "name": name, "url": redacted(courier.url),
                "pending": row.get("pending", 0), "sent": row.get("sent", 0),
                "failed": row.get("failed", 0), "last_sent": row.get("last_sent"),
                "last_error": row.get("last_error", ""), "failures_in_a_row": self.failures[name],
                "waits": round(max(0.0, self.resume_at[name] - now), 1)})
        return {"pid": os.getpid(), "uptime": round(now - self.started, 3),
                "broker": self.broker_state, "cursor": self.outbox.cursor(),
                "rules": len(self.rules.rules), "kinds": sorted(self.rules.kinds),
                "queued_since_start": self.feed.recorded, "targets": targets}

    def close(self) -> None:
        """Let deliveries in flight report (a restart then does not send them again), stop."""
        deadline = time.monotonic() + STOP_GRACE
        while any(c.busy for c in self.couriers.values()) and time.monotonic() < deadline:
            try:
                self._settle(self.results.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        for courier in self.couriers.values():
            courier.stop()
        if self.metrics:
            self.metrics.close()
        self.broker.close()
        for sock in (self.sub, self.control):
            sock.close(0)
        if self._own_ctx:
            self.ctx.term()
        self.outbox.close()
        for fd in (self._wake_r, self._wake_w, self._stop_r, self._stop_w, self._lock):
            os.close(fd)

