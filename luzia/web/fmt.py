"""How values look on the dashboard's pages: the Jinja filters.

The durations and stamps are the CLI's (luzia/cli/render.py), so a job reads the same in
`luzia jobs` and in a browser. Everything from the broker is text to Jinja, which escapes
it; `clean` also drops control characters and escape sequences from one-line fields.
"""

from __future__ import annotations

import time
from typing import Any

from luzia.cli.render import age, num, stamp
from luzia.text import one_line, strip_terminal


def ago(t: Any) -> str:
    """How long ago a unix time was: 42s, 5m, 3h."""
    value = num(t)
    return age(time.time() - value) if value else "-"


def span(start: Any, end: Any) -> str:
    """The time from `start` to `end` (now, while it has no end)."""
    a = num(start)
    if not a:
        return "-"
    b = num(end) or time.time()
    return seconds(b - a)


def seconds(value: Any) -> str:
    """A duration, a little finer than `age`: 850ms, 12.3s, 4m05s, 2h10m."""
    s = num(value)
    if s is None:
        return "-"
    s = max(0.0, s)
    if s < 1:
        return f"{s * 1000:.0f}ms"
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def pct(value: Any, scale: float = 100.0) -> str:
    """A fraction (scale 100) or a percent (scale 1) as '42%'; '-' when unknown."""
    v = num(value)
    return "-" if v is None or v < 0 else f"{v * scale:.0f}%"


def width(value: Any, scale: float = 100.0) -> str:
    """A CSS width for a progress or load bar, from 0 to 100%."""
    v = num(value)
    return "0%" if v is None or v < 0 else f"{min(100.0, v * scale):.1f}%"


def gb(value: Any) -> str:
    v = num(value)
    return "-" if v is None or v < 0 else f"{v:.1f} GB"


def money(value: Any) -> str:
    v = num(value)
    return "-" if v is None else f"${v:.2f}" if v >= 0.1 else f"${v:.4f}"


def count(value: Any) -> str:
    v = num(value)
    return "-" if v is None else f"{v:,.0f}"


def clean(value: Any, cut: int = 0) -> str:
    return one_line("" if value is None else str(value), cut)


def text(value: Any) -> str:
    """Many lines of program output, without escape sequences."""
    return strip_terminal("" if value is None else str(value))


FILTERS = {"ago": ago, "span": span, "seconds": seconds, "pct": pct, "width": width,
           "gb": gb, "money": money, "count": count, "clean": clean, "text": text,
           "stamp": stamp}
