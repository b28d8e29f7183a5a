"""The text of a notification: what a person needs to decide whether to look, and how.

Job id, project, the task's first line, how it ended (with the broker's reason), run time,
cost when the job has one, and where to look: the job's page (`notify.link`, else the
dashboard's when luzia-web is on), else the command `luzia jobs ID`. Every string from the
broker passes through text.one_line (it may hold anything a task or a program printed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from luzia.cli.render import num
from luzia.config import Config
from luzia.notify.events import NotifyEvent
from luzia.states import exit_text
from luzia.text import one_line
from luzia.web.fmt import seconds

LINE = 200          # characters of one line of the message (the task's first line, a reason)
SCREEN_LINES = 6    # lines of a waiting job's pane in its message

# Apprise's notify types (its names): the colour or icon a service shows
SUCCESS, INFO, WARNING, FAILURE = "success", "info", "warning", "failure"
LEVEL = {"completed": SUCCESS, "failed": FAILURE, "rejected": FAILURE, "lost": FAILURE,
         "agent_dead": FAILURE, "queue_rejecting": FAILURE, "killed": WARNING,
         "stalled": WARNING, "needs_input": WARNING, "paused": WARNING}
HEADLINE = {"needs_input": "needs input", "paused": "paused (usage limit)"}


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    level: str = INFO


def compose(ev: NotifyEvent, link: str = "") -> Message:
    """The notification for `ev`; `link` is notify.link (a template with {id})."""
    if ev.kind == "agent_dead":
        return _agent_dead(ev)
    if ev.kind == "queue_rejecting":
        return Message("luzia: the queue is full; submissions are rejected",
                       "\n".join(filter(None, [_clip(ev.detail), "look: luzia queue status"])),
                       LEVEL[ev.kind])
    job = ev.job
    job_id = _clip(job.get("id") or ev.key, 64)
    project = _clip(job.get("project"), 64) or "?"
    title = f"luzia: {project} job {job_id} {HEADLINE.get(ev.kind, ev.kind)}"
    lines = [f"task: {first_line(job.get('task'))}" if job.get("task") else "",
             _what(ev), _who(job)]
    attempt = ended_attempt(job, ev.at) if ev.kind in ("completed", "failed", "killed",
                                                       "lost", "paused") else None
    run = _span((attempt or {}).get("started_at"), (attempt or {}).get("finished_at") or
                (ev.at if ev.kind == "lost" else None))
    if ev.kind in ("stalled", "needs_input"):
        run = _span(job.get("started_at"), ev.at or time.time())
        lines.append(f"running for: {run}" if run else "")
    if ev.kind == "needs_input":
        lines += screen(job, ev.detail)
    elif run:
        lines.append(f"run time: {run}")
    cost = cost_of(job)
    if cost is not None:
        lines.append(f"cost: ${cost:.2f}")
    lines.append(look(job_id, link))
    return Message(title, "\n".join(line for line in lines if line), LEVEL.get(ev.kind, INFO))


def job_link(cfg: Config) -> str:
    """Where a job's page is, as a template with {id}: notify.link, else the dashboard's job
    page when luzia-web is on (its sign-in stays the dashboard's: no token in a message),
    else "" (the message gives the command)."""
    if cfg.notify.link:
        return cfg.notify.link
    if cfg.web.enabled:     # web.tokens.base_url: the one answer to "where is the dashboard"
        from luzia.web.tokens import base_url
        return base_url(cfg) + "/jobs/{id}"
    return ""


def look(job_id: str, link: str = "") -> str:
    """Where a person looks next: the dashboard's page for the job, or the command."""
    if link:
        try:
            return f"look: {link.format(id=job_id)}"
        except (KeyError, IndexError, ValueError):
            return f"look: {link}"
    return f"look: luzia jobs {job_id}"


def first_line(task: Any) -> str:
    text = str(task or "").strip()
    return _clip(text.splitlines()[0] if text else "")


def ended_attempt(job: dict[str, Any], at: float) -> dict[str, Any] | None:
    """The attempt that ended at the event's time `at` (the latest to finish by then; a job
    retried since has later ones), else None."""
    attempts = job.get("attempts")
    if not isinstance(attempts, list):
        return None
    done = [a for a in attempts if isinstance(a, dict) and num(a.get("finished_at")) is not None
            and (not at or a["finished_at"] <= at + 1.0)]
    return max(done, key=lambda a: a["finished_at"]) if done else None


def cost_of(job: dict[str, Any]) -> float | None:
    """The job's cost in USD when the broker records one (issue 13's `cost_usd`), else None."""
    meta = job.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    for value in (job.get("cost_usd"), job.get("cost"), meta.get("cost_usd")):
        cost = num(value)
        if cost is not None:
            return cost
    return None


def _what(ev: NotifyEvent) -> str:
    job = ev.job
    reason = _clip(ev.detail or job.get("reason"))
    # a paused or requeued job has no host any more: the attempt that ended says where it ran
    ended = ended_attempt(job, ev.at) if not job.get("host") else None
    host = _clip(job.get("host") or (ended or {}).get("host"), 64)
    where = f"attempt {job.get('attempt') or '?'}"
    if num(job.get("max_retries")):
        where += f" of {int(job['max_retries']) + 1}"
    where += f", on {host}" if host else ""
    if ev.kind == "stalled":
        since = num(job.get("stalled_since"))
        quiet = _span(since, ev.at or time.time()) if since else ""
        return f"stalled: no output{' for ' + quiet if quiet else ''} ({where})"
    if ev.kind == "needs_input":
        return f"waiting for a person ({where}); answer with: luzia reply {job.get('id')} \"...\""
    if ev.kind == "rejected":
        return f"rejected: {reason or 'refused by the broker'}"
    exit_code = job.get("exit_code")
    detail = reason or (exit_text(exit_code) if ev.kind == "failed" and isinstance(exit_code, int)
                        else "")
    return f"{ev.kind}{': ' + detail if detail else ''} ({where})"


def screen(job: dict[str, Any], detail: str = "", count: int = SCREEN_LINES) -> list[str]:
    """What the waiting job's pane shows: its last lines (`needs_input_lines`), else the
    line the broker noted with the event."""
    found = job.get("needs_input_lines")
    shown = [_clip(line) for line in found[-count:]] if isinstance(found, list) else []
    shown = [line for line in shown if line] or ([_clip(detail)] if detail else [])
    return ["its screen:", *("  " + line for line in shown)] if shown else []


def _who(job: dict[str, Any]) -> str:
    parts = [f"project {_clip(job.get('project'), 64)}" if job.get("project") else "",
             f"user {_clip(job.get('user'), 64)}" if job.get("user") else "",
             f"priority {_clip(job.get('priority'), 16)}" if job.get("priority") else ""]
    return " · ".join(p for p in parts if p)


def _agent_dead(ev: NotifyEvent) -> Message:
    name = _clip(ev.subject, 64) or "?"
    body = [f"agent {name} stopped beating; its running jobs are lost until it comes back "
            "(or broker.lost_grace requeues them)", _clip(ev.detail), "look: luzia agents status"]
    return Message(f"luzia: agent {name} is dead", "\n".join(b for b in body if b),
                   LEVEL["agent_dead"])


def _clip(value: Any, width: int = LINE) -> str:
    return one_line(str(value), width) if value not in (None, "") else ""


def _span(start: Any, end: Any) -> str:
    """The time from `start` to `end` as the dashboard writes it (4m12s), "" if unknown."""
    a, b = num(start), num(end)
    return seconds(b - a) if a is not None and b is not None and b >= a else ""

