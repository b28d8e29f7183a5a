"""A provider's usage limit in an agent's output: is there one, and when does it reset.

What the agents print (docs/AGENTS.md has the table, tests/agents/test_limits.py the real
forms with their time zones):

    Claude AI usage limit reached|1749924000                    (the reset as unix time)
    Claude usage limit reached. Your limit will reset at 3pm (America/Santiago).
    You've hit your limit · resets 10pm (America/New_York)
    5-hour limit reached ∙ resets 3pm                           (no zone: this host's time)
    You've hit your usage limit. ... try again in 5 days 22 hours 11 minutes.    (codex)
    You've hit your usage limit. ... try again at Jul 5th, 2026 8:19 PM.         (codex)
    Error: 429 {"type":"error","error":{"type":"rate_limit_error", ...}}         (a rate limit)

A usage limit without a reset time waits `limits.wait`, a rate limit `limits.rate_wait`.
Only an attempt that failed is looked at (held.py): a job that completed is never paused
for having written about rate limits.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

from luzia.text import one_line

USAGE_PATTERNS = (
    r"usage limit reached",                        # Claude's older and newer messages
    r"\b(?:hit|reached) your (?:[\w-]+ )?limit",   # You've hit your (session|usage|weekly) limit
    r"\blimit reached\b.{0,20}\bresets?\b",        # 5-hour limit reached ∙ resets 3pm
    r"usage_limit_reached",                        # an OpenAI error type
)
RATE_PATTERNS = (
    r"rate_limit_error", r"\b429\b.{0,40}(?:rate|too many)", r"too many requests",
    r"\brate limit(?:ed| exceeded| reached)\b",
)
SCANNED = 60               # output lines looked at, from the end

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_EPOCH = re.compile(r"\|\s*(\d{10}|\d{13})\b|\"?resets?_at\"?\s*[:=]\s*(\d{10})\b")
_IN_SECONDS = re.compile(r"\"?resets?_in_seconds\"?\s*[:=]\s*(\d+)")
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(
    r"\b(?:try again|resets?|reset|available)\s+in\s+((?:\d+\s*(?:days?|d|hours?|hrs?|h|minutes?"
    r"|mins?|m|seconds?|secs?|s)\b[\s,]*(?:and\s+)?)+)", re.I)
_PART = re.compile(r"(\d+)\s*([dhms])", re.I)
_ISO = re.compile(r"\b(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)")
_CLOCK = re.compile(
    r"\b(?:resets?|reset|try again|available)(?:\s+(?:at|on))?\s+"
    r"(?:(?P<month>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+(?P<day>\d{1,2})"
    r"(?:st|nd|rd|th)?,?\s*(?:(?P<year>\d{4}),?\s*)?(?:at\s+)?)?"
    r"(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s*(?P<ampm>[ap]\.?m\.?)?"
    r"(?:\s*\((?P<zone>[A-Za-z_]+(?:/[A-Za-z0-9_+-]+)*)\)|\s+(?P<utc>UTC|GMT)\b)?", re.I)


@dataclass(frozen=True)
class Limit:
    """A limit seen in the output: when it resets (unix time), the line, usage or rate."""

    until: float
    line: str
    kind: str


def detect(lines: Iterable[str], now: float, wait: float = 3600.0, rate_wait: float = 60.0,
           extra: Iterable[str] = ()) -> Limit | None:
    """The last limit the lines show (a usage limit before a rate limit), or None."""
    lines = [line for line in lines if line.strip()][-SCANNED:]
    usage = [re.compile(p, re.I) for p in (*USAGE_PATTERNS, *extra)]
    rate = [re.compile(p, re.I) for p in RATE_PATTERNS]
    for kind, patterns, fallback in (("usage", usage, wait), ("rate", rate, rate_wait)):
        for i in range(len(lines) - 1, -1, -1):
            if any(p.search(lines[i]) for p in patterns):
                # a terminal may have wrapped the reset time onto the next line
                text = " ".join(lines[i:i + 2])
                until = reset_time(text, now)
                until = now + fallback if until is None else max(until, now + 1)
                return Limit(until=until, line=one_line(lines[i], 2000), kind=kind)
    return None


def reset_time(text: str, now: float, local: dt.tzinfo | None = None) -> float | None:
    """The reset time a limit message names (unix time), or None if it names none. A clock
    time without a date is its next occurrence; without a zone it is `local` (this host's)."""
    m = _EPOCH.search(text)
    if m:
        value = int(m.group(1) or m.group(2))
        return value / 1000 if value > 10**12 else float(value)
    m = _IN_SECONDS.search(text)
    if m:
        return now + int(m.group(1))
    m = _DURATION.search(text)
    if m:
        return now + sum(int(n) * _UNITS[u.lower()] for n, u in _PART.findall(m.group(1)))
    m = _ISO.search(text)
    if m:
        return _iso(m.group(1), local)
    m = _CLOCK.search(text)
    if m and (m.group("ampm") or m.group("minute")):
        return _clock(m, now, local)
    return None


def _iso(text: str, local: dt.tzinfo | None) -> float | None:
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=local) if local else when.astimezone()
    return when.timestamp()


def _clock(m: re.Match, now: float, local: dt.tzinfo | None) -> float | None:
    hour, minute = int(m.group("hour")), int(m.group("minute") or 0)
    ampm = (m.group("ampm") or "").replace(".", "").lower()
    if ampm:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    if hour > 23 or minute > 59:
        return None
    zone = _zone(m.group("zone"), m.group("utc"), local)
    today = dt.datetime.fromtimestamp(now, zone)
    if m.group("month"):
        month = _MONTHS.index(m.group("month")[:3].lower()) + 1
        year = int(m.group("year") or today.year)
        try:
            when = dt.datetime(year, month, int(m.group("day")), hour, minute, tzinfo=zone)
        except ValueError:
            return None
        if not m.group("year") and when.timestamp() < now - 180 * 86400:
            when = when.replace(year=year + 1)      # "Jan 2" said in late December
        return when.timestamp()
    when = today.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if when.timestamp() < now - 600:    # passed more than a rounding ago: the next one
        when = (when + dt.timedelta(days=1)).replace(hour=hour, minute=minute)
        when = dt.datetime(when.year, when.month, when.day, hour, minute, tzinfo=zone)
    return when.timestamp()


def _zone(name: str | None, utc: str | None, local: dt.tzinfo | None) -> dt.tzinfo | None:
    """The named zone; UTC; else `local` (None: this host's, through astimezone)."""
    if utc:
        return dt.UTC
    if name:
        try:
            from zoneinfo import ZoneInfo
            return ZoneInfo(name)
        except (KeyError, ValueError, OSError):   # unknown here: this host's time instead
            pass
    return local or dt.datetime.now().astimezone().tzinfo
