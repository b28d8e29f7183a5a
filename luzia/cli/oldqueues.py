"""The old dispatchers' queues as Items: the queue dispatcher's pending-requests.json and the
async dispatcher's Beads issues (.beads/issues.jsonl), each entry read as far as it can be,
with its idempotent job id and its project. Read by `luzia import` (imports.py) and by the
Beads follower (beads_follow.py); nothing here talks to the broker."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from luzia.errors import UsageError

REQUEST_TAKEN = {"approved", "ready", "pending", "queued", "new", "open"}
REQUEST_REVIEW = {"pending_review", "review", "awaiting_approval", "needs_review", "pending review"}
URGENT_WORDS = ("urgent", "emergency", "asap", "critical", "outage")
BEADS_TAKEN = {"open", "blocked"}      # the async dispatcher blocked a task on error: rerun it
BEADS_TYPES = {"code": "code", "code-generation": "code", "bug": "code", "feature": "code",
               "text": "text", "text-processing": "text", "summarize": "text", "docs": "text",
               "reasoning": "reasoning"}


@dataclass
class Item:
    """One entry of an old queue, as far as it could be read."""

    source: str          # "pending-requests" or "beads"
    key: str             # its id in the old queue
    task: str = ""
    project: str = ""
    priority: str | int | None = None
    type: str = ""
    created: float | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    skip: str = ""       # why it is not taken ("" : take it)

    @property
    def job_id(self) -> str:
        return self._id(f"{self.source}:{self.key}")

    def job_id_after(self, previous: str) -> str:
        """The job of this item reopened after job `previous` completed (a Beads issue
        edited open again): as idempotent as the first, one id per generation."""
        return self._id(f"{self.source}:{self.key} after {previous}")

    def _id(self, seed: str) -> str:
        stamp = time.strftime("%H%M%S", time.localtime(self.created)) if self.created else "000000"
        return f"{stamp}-{hashlib.sha256(seed.encode()).hexdigest()[:12]}"


def when(value: Any) -> float | None:
    """A timestamp from an old queue: epoch seconds or ISO 8601; None when unreadable."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def first(entry: dict[str, Any], *names: str) -> str:
    for name in names:
        value = entry.get(name)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return ""


# ---------------------------------------------------------------------------
# the queue dispatcher's pending-requests.json


def read_requests(path: Path, include_review: bool) -> Iterator[Item]:
    """Requests from a list, {"requests": [...]} / {"pending": [...]}, or {id: request}."""
    data = _load_json(path)
    if isinstance(data, dict):
        listed = data.get("requests", data.get("pending"))
        entries = listed if isinstance(listed, list) else [
            {"id": k, **v} for k, v in data.items() if isinstance(v, dict)]
    elif isinstance(data, list):
        entries = data
    else:
        raise UsageError(f"{path}: expected a JSON list of requests or {{\"requests\": [...]}}")
    for n, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            yield Item("pending-requests", f"#{n}", skip=f"entry {n} is not a JSON object")
            continue
        yield _request(entry, n, include_review)


def _request(entry: dict[str, Any], n: int, include_review: bool) -> Item:
    key = first(entry, "id", "request_id", "uuid") or f"#{n}"
    kind = first(entry, "type", "request_type", "category")
    text = first(entry, "task", "description", "details", "message", "request", "title")
    status = first(entry, "status", "state").lower() or "pending"
    item = Item("pending-requests", key, task=text, project=first(entry, "project", "target"),
                created=when(entry.get("created_at") or entry.get("timestamp") or entry.get("created")),
                metadata={"source": "pending-requests", "request_id": key, "request_type": kind,
                          "status": status, "requester": first(entry, "user", "requester", "from")})
    explicit = first(entry, "priority").lower()
    if explicit in ("critical", "high", "normal", "low"):
        item.priority = explicit
    elif any(w in f"{text} {first(entry, 'title')}".lower() for w in URGENT_WORDS):
        item.priority = "critical"
    elif status in ("approved", "ready"):
        item.priority = "high"
    if not text:
        item.skip = "no task text (description, task, details or title)"
    elif status in REQUEST_REVIEW and not include_review:
        item.skip = f"status {status}: awaits review (--include-review takes it)"
    elif status not in REQUEST_TAKEN and status not in REQUEST_REVIEW:
        item.skip = f"status {status}"
    return item


# ---------------------------------------------------------------------------
# the async dispatcher's Beads issues, .beads/issues.jsonl


def beads_file(path: Path) -> Path:
    for candidate in (path, path / "issues.jsonl", path / ".beads" / "issues.jsonl"):
        if candidate.is_file():
            return candidate
    raise UsageError(f"no Beads issues at {path}; give the repository, its .beads directory "
                     "or the issues.jsonl file")


def read_beads(path: Path) -> Iterator[Item]:
    """Issues, one JSON object a line; a line that is not one is reported, not fatal."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict) or not first(entry, "id"):
            yield Item("beads", f"line {n}", skip=f"line {n} is not a Beads issue (JSON with an id)")
            continue
        yield bead(entry)


def bead(entry: dict[str, Any]) -> Item:
    key = first(entry, "id")
    title, body = first(entry, "title"), first(entry, "description")
    status = first(entry, "status").lower() or "open"
    labels = [str(x).lower() for x in entry.get("labels") or [] if isinstance(x, str)]
    kind = next((BEADS_TYPES[x] for x in [*labels, first(entry, "issue_type").lower()]
                 if x in BEADS_TYPES), "")
    raw = entry.get("priority")
    priority = min(3, raw) if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0 else None
    item = Item("beads", key, task=f"{title}\n\n{body}".strip(), priority=priority, type=kind,
                created=when(entry.get("created_at")),
                metadata={"source": "beads", "beads_id": key, "status": status,
                          "issue_type": first(entry, "issue_type"), "labels": labels,
                          "assignee": first(entry, "assignee")})
    if not item.task:
        item.skip = "no title or description"
    elif status not in BEADS_TAKEN:
        running = " (running in the old dispatcher)" if status == "in_progress" else ""
        item.skip = f"status {status}{running}"
    return item


# ---------------------------------------------------------------------------
# taking them


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"{path} is not valid JSON ({exc}); nothing was imported") from None


def place(items: list[Item], projects: Any, default_project: str | None) -> None:
    """Each item's project: its own if declared, else the default; skipped when neither is."""
    for item in items:
        if not item.skip:
            item.project = item.project if item.project in projects else (default_project or item.project)
            if item.project not in projects:
                item.skip = (f"unknown project {item.project or '(none)'!r}; pass --project or "
                             "declare it in luzia.toml")
