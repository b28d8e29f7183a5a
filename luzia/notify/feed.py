"""From the broker to the outbox: what the broker says becomes events, and each event the
rules want becomes its notifications (luzia/notify/outbox.py) in one transaction.

- Jobs' ends, and a job beginning to wait for a person (`needs-input`), are read from the
  broker's events table with `events.since` from the outbox's cursor: the PUB event only
  says when to look, so one that happened while the notifier was down, or whose PUB
  message was dropped, is read all the same. A wait whose job has ended by the time it is
  read is no longer due: not told.
- The stalled flag and the fleet (agent_dead, queue_rejecting) are states, not rows: seen
  live on PUB, and read again with `reconcile()` when the notifier (re)starts or the broker
  comes back, so one that began meanwhile and still holds is told too.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from luzia.errors import NotFound
from luzia.notify.events import NotifyEvent, Rules
from luzia.notify.message import compose
from luzia.notify.outbox import Outbox
from luzia.notifyconf import JOB_FLAGS, JOB_ROWS, JOB_WAITS, kind_name, row_name

log = logging.getLogger(__name__)

BATCH = 100              # events rows per events.since request
PAGES = 5                # events.since requests per catch-up before the loop's next turn
RUNNING_MAX = 500        # running jobs read by one reconcile (more than a fleet's slots;
                         # each carries its task, and a reply must stay under 1 MiB)


class Broker(Protocol):
    """The broker's control socket (luzia.client.Control)."""

    def call(self, op: str, timeout: float | None = None, **args: Any) -> Any: ...


class Feed:
    """Records events in the outbox; the notifier's loop calls it from its one thread."""

    def __init__(self, outbox: Outbox, rules: Rules, broker: Broker,
                 link: Callable[[], str] = str) -> None:
        self.outbox = outbox
        self.rules = rules
        self.broker = broker
        self.link = link         # a job page's URL template, asked per message (message.py)
        self.recorded = 0        # notifications added since start (for status)

    # recording ------------------------------------------------------------------------
    def _add(self, ev: NotifyEvent, targets: list[str], now: float) -> None:
        """Inside a transaction: the event's notification for each target (none twice)."""
        msg = compose(ev, self.link())
        for target in targets:
            if self.outbox.add(ev.key, target, ev.kind, msg.title, msg.body, msg.level, now):
                self.recorded += 1
                log.info("notification %s for %s queued", ev.key, target)

    def record(self, ev: NotifyEvent) -> None:
        targets = self.rules.targets_for(ev)
        if targets:
            with self.outbox.transaction():
                self._add(ev, targets, time.time())

    # jobs' ends: the broker's events table ------------------------------------------------
    def catch_up(self, pages: int = PAGES) -> bool:
        """Take the job events since the cursor into the outbox, at most `pages` pages of
        them (the loop answers its socket in between); True if there is more. Raises
        BrokerUnreachable (the cursor stays, so nothing is skipped)."""
        kinds = sorted(row_name(k) for k in self.rules.kinds & set(JOB_ROWS))
        for _ in range(pages):
            cursor = self.outbox.cursor()
            page = self.broker.call("events.since", after=cursor or 0, states=kinds, limit=BATCH)
            last, rows, more = _page(page)
            if cursor is None:            # first start: what happened before is history
                with self.outbox.transaction():
                    self.outbox.set_cursor(last)
                log.info("first start: notifying of broker events after #%d", last)
                return False
            if last < cursor:             # a new (or restored) job database: read it all
                log.warning("the broker's events end at #%d, before our cursor #%d: its database "
                            "is not the one we read; reading it from the start", last, cursor)
                with self.outbox.transaction():
                    self.outbox.set_cursor(0)
                continue
            events = [self._job_end(row) for row in rows]
            with self.outbox.transaction():
                now = time.time()
                for ev, targets in events:
                    self._add(ev, targets, now)
                self.outbox.set_cursor(last)
            if not more:
                return False
        return True

    def _job_end(self, row: dict[str, Any]) -> tuple[NotifyEvent, list[str]]:
        job = {"id": row["job_id"], "project": row.get("project", ""), "user": row.get("user", "")}
        ev = NotifyEvent(kind=kind_name(row["state"]),
                         key=f"job/{row['job_id']}/{row['state']}/{row['seq']}",
                         job=job, detail=str(row.get("detail") or ""), at=float(row["at"]))
        targets = self.rules.targets_for(ev)
        if targets:     # only then the details: the task, times and attempts for the message
            ev = dataclasses.replace(ev, job=self._details(row["job_id"]) or job)
        if targets and ev.kind in JOB_WAITS and ev.job.get("state") not in (None, "running"):
            log.info("job %s waited for input but is %s now: not told", ev.job["id"],
                     ev.job.get("state"))
            targets = []
        return ev, targets

    def _details(self, job_id: str) -> dict[str, Any] | None:
        try:
            job = self.broker.call("jobs.get", id=job_id)
        except NotFound:      # pruned since: the row's own fields will do
            return None
        return job if isinstance(job, dict) else None

    # flags and the fleet: PUB events, and reconcile ------------------------------------
    def on_event(self, topic: str, data: dict[str, Any]) -> bool:
        """One PUB event; True when it says a catch-up is due (a job's end)."""
        noun, _, state = topic.partition(".")
        if noun == "job":
            self._flags(data, fetch=True)
            return kind_name(state) in JOB_ROWS and kind_name(state) in self.rules.kinds
        if noun == "agent" and "agent_dead" in self.rules.kinds and state in ("dead", "live"):
            self.condition("agent_dead", str(data.get("name", "")), state == "dead")
        elif noun == "queue" and "queue_rejecting" in self.rules.kinds \
                and state in ("rejecting", "accepting"):
            self.condition("queue_rejecting", "", state == "rejecting", _queue_detail(data))
        return False

    def _flags(self, job: dict[str, Any], fetch: bool) -> None:
        """A job whose stalled flag is up: one notification per attempt."""
        for flag in JOB_FLAGS:
            if not job.get(flag) or flag not in self.rules.kinds or not isinstance(job.get("id"), str):
                continue
            ev = NotifyEvent(kind=flag, key=f"{flag}/{job['id']}/{job.get('attempt', 0)}", job=job,
                             detail=str(job.get("reason") or ""), at=time.time())
            if not self.rules.targets_for(ev) or self.outbox.known(ev.key):
                continue
            if fetch:       # a PUB summary lacks the task and times
                ev = dataclasses.replace(ev, job=self._details(job["id"]) or job)
            self.record(ev)

    def condition(self, kind: str, subject: str, active: bool, detail: str = "") -> None:
        """A fleet condition seen on or off; its coming on is one notification (per episode)."""
        if kind == "agent_dead" and not subject:
            return
        with self.outbox.transaction():
            now = time.time()
            episode = self.outbox.observe(f"{kind}/{subject}", active, now)
            if episode:
                ev = NotifyEvent(kind=kind, key=f"{kind}/{subject}/{episode}", subject=subject,
                                 detail=detail, at=now)
                self._add(ev, self.rules.targets_for(ev), now)

    def reconcile(self) -> None:
        """Read the states PUB may have told while we were not listening (raises
        BrokerUnreachable)."""
        kinds = self.rules.kinds
        if kinds & set(JOB_FLAGS):
            running = self.broker.call("jobs.list", state=["running"], limit=RUNNING_MAX)
            for job in running if isinstance(running, list) else []:
                if isinstance(job, dict):
                    self._flags(job, fetch=False)
        if "agent_dead" in kinds:
            agents = self.broker.call("agents.status")
            for agent in agents if isinstance(agents, list) else []:
                if isinstance(agent, dict) and isinstance(agent.get("name"), str):
                    self.condition("agent_dead", agent["name"], agent.get("state") == "dead")
        if "queue_rejecting" in kinds:
            queue = self.broker.call("queue.status")
            if isinstance(queue, dict) and isinstance(queue.get("rejecting"), bool):
                self.condition("queue_rejecting", "", queue["rejecting"], _queue_detail(queue))


def _page(page: Any) -> tuple[int, list[dict[str, Any]], bool]:
    """events.since's answer, checked (it came over the network)."""
    from luzia.errors import ProtocolError
    if not isinstance(page, dict) or not isinstance(page.get("last"), int) \
            or not isinstance(page.get("events"), list):
        raise ProtocolError("the broker answered events.since with a malformed page")
    rows = [r for r in page["events"] if isinstance(r, dict) and isinstance(r.get("seq"), int)
            and isinstance(r.get("job_id"), str) and isinstance(r.get("state"), str)
            and kind_name(r["state"]) in JOB_ROWS
            and isinstance(r.get("at"), (int, float))]
    return page["last"], rows, bool(page.get("more"))


def _queue_detail(data: dict[str, Any]) -> str:
    pending, limit = data.get("pending"), data.get("max_pending")
    if isinstance(pending, int) and isinstance(limit, int):
        return f"{pending} jobs pending, broker.max_pending = {limit}"
    return ""

