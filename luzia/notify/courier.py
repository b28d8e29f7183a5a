"""Delivery: one thread per target sends its notifications through Apprise, one at a time,
so a slow or dead endpoint holds up only its own target, never the notifier's loop (and the
broker never waits for any of this). The loop decides what is sent when: the per-target rate
(`RateLimit`) and the backoff after failures (`Backoff`) live in its thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from luzia.notify.outbox import Notice

log = logging.getLogger(__name__)


def deliver(url: str, title: str, body: str, level: str = "info") -> str:
    """Send one message to one Apprise URL: "" when the target took it, else why not."""
    import apprise  # 0.3 s of plugin loading: only where a message is really sent
    app = apprise.Apprise()
    if not app.add(url):
        return "not a valid Apprise URL (see https://github.com/caronc/apprise/wiki)"
    try:
        result = app.notify(body=body, title=title, notify_type=level)
    except Exception as exc:  # noqa: BLE001 - a plugin's bug is this message's failure, not ours
        return f"apprise raised {type(exc).__name__}: {exc}"
    if result:
        return ""
    return _why(result) or "the target did not accept it (nothing more from Apprise)"


def valid_url(url: str) -> bool:
    """Does Apprise know this URL's service, and is it well formed?"""
    import apprise
    return bool(apprise.Apprise().add(url))


def _why(result: object) -> str:
    """The last warning Apprise logged for this call (its result carries them since 1.x's
    successor; older releases say only True/False)."""
    logs = getattr(result, "logs", None)
    if not callable(logs):
        return ""
    said = [e.message for e in logs() if str(getattr(e, "level", "")).upper() in ("WARNING", "ERROR")]
    return str(said[-1]) if said else ""


def redacted(url: str) -> str:
    """The URL with its secrets hidden (Apprise's privacy form, without the query, which
    holds Apprise's defaults and may hold a token), for logs and `status`."""
    try:
        import apprise
        plugin = apprise.Apprise.instantiate(url)
        if plugin:
            return str(plugin.url(privacy=True)).split("?", 1)[0]
    except Exception:  # noqa: BLE001 - an unparseable URL is shown by its scheme only
        pass
    return url.split("://", 1)[0] + "://…"


@dataclass
class Delivery:
    """A courier's report: what was tried, and the error ("" when delivered)."""

    target: str
    notice: Notice
    error: str
    seconds: float


class Courier:
    """A target's delivery thread. `send` hands it a notification (only when not `busy`);
    the result comes back on `results`, and `wake()` interrupts the loop's poll."""

    def __init__(self, name: str, url: str, results: queue.Queue, wake: Callable[[], None],
                 send: Callable[[str, str, str, str], str] = deliver) -> None:
        self.name = name
        self.url = url
        self.busy = False                   # read and written by the loop's thread only
        self._deliver = send
        self._results = results
        self._wake = wake
        self._inbox: queue.Queue[Notice | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"notify-{name}", daemon=True)
        self._thread.start()

    def send(self, notice: Notice) -> None:
        self.busy = True
        self._inbox.put(notice)

    def stop(self) -> None:
        self._inbox.put(None)

    def _run(self) -> None:
        while (notice := self._inbox.get()) is not None:
            start = time.monotonic()
            try:
                error = self._deliver(self.url, notice.title, notice.body, notice.level)
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any one message
                error = f"{type(exc).__name__}: {exc}"
            self._results.put(Delivery(self.name, notice, error, time.monotonic() - start))
            self._wake()


class RateLimit:
    """A token bucket: `per_minute` notifications a minute, bursts up to the same number."""

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.burst = max(1.0, per_minute)
        self.tokens = self.burst
        self.at = time.monotonic()

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def ready(self, now: float) -> float:
        """0 if one may go now, else the seconds until one may."""
        self._refill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1


class Backoff:
    """Doubling delays from `initial` to `limit`: the nth failure in a row waits
    initial·2^(n-1)."""

    def __init__(self, initial: float, limit: float) -> None:
        self.initial = initial
        self.limit = limit

    def delay(self, failures: int) -> float:
        return min(self.limit, self.initial * 2 ** max(0, min(failures - 1, 40)))
