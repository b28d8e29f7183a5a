"""How the CLI's views look, in the parts every noun shares: safe cells, bars, ages, numbers
from the network, and tables — rich on a TTY, plain text otherwise (or with NO_COLOR).

Everything that came from a task, a program or the network is passed through `clean`
before it is shown, so an escape sequence in a task cannot colour or move `luzia jobs`.
Each noun's own views live with its commands (luzia/cli/jobs.py, queue.py, agents.py, …).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

from luzia.states import TERMINAL_NAMES
from luzia.text import one_line

TERMINAL = TERMINAL_NAMES
STATE_STYLE = {"pending": "yellow", "assigned": "cyan", "running": "cyan", "completed": "green",
               "failed": "red", "killed": "magenta", "rejected": "red", "paused": "blue",
               "lost": "yellow"}
HEALTH_STYLE = {"ok": "green", "busy": "yellow", "full": "yellow", "draining": "cyan",
                "over-ceiling": "red", "degraded": "bold red", "dead": "bold red", "gone": "dim",
                "refused": "bold red"}
LOAD_LEVEL_STYLE = {"low": "green", "moderate": "", "high": "yellow", "critical": "bold red"}
LEVEL_STYLE = {"critical": "bold red", "high": "yellow", "normal": "", "low": "dim"}


def agent_troubles(agent: dict[str, Any]) -> list[str]:
    """What an operator must fix about an agent, one line each: its protocol not served
    (issue 19), a second agent refused under its name, an agent that stopped taking work by
    itself (a full disk; issue 17)."""
    name = clean(agent.get("name"))
    out = []
    if agent.get("outdated"):
        out.append(f"agent {name} is refused: {clean(agent.get('outdated'))}")
    refused = agent.get("refused")
    if isinstance(refused, dict):
        out.append(f"agent {name}: a second agent under this name was refused (pid "
                   f"{clean(refused.get('pid'))}, instance {clean(refused.get('instance'))}, "
                   f"{seconds(refused.get('ago'))} ago): two hosts with one name? give each "
                   "its own agent.name")
    if agent.get("degraded"):
        out.append(f"agent {name} takes no new work: {clean(agent.get('degraded'))}")
    return out


def fancy(stream: Any = None) -> bool:
    """Colour and animation: only on a terminal, and never with NO_COLOR set."""
    stream = stream or sys.stdout
    return stream.isatty() and not os.environ.get("NO_COLOR")


def clean(value: Any, width: int = 0) -> str:
    """A value from outside as one safe line (no control characters, no escapes)."""
    return one_line("" if value is None else str(value), width)


def bar(percent: Any, width: int = 20) -> str:
    """The progress bar the older file-based dispatchers drew: `[██████░░░░░░░░░░░░░░] 30%`;
    dots when the progress is unknown."""
    percent = num(percent)
    if percent is None or percent < 0:
        return "[" + "·" * width + "]"
    percent = min(100.0, percent)
    filled = round(width * percent / 100)
    return "[" + "█" * filled + "░" * (width - filled) + f"] {percent:.0f}%"


def age(seconds: float | None) -> str:
    """A duration the way a person reads it: 42s, 5m, 3h, 2d."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def num(value: Any) -> float | None:
    """A number from the network, or None for anything else (null, text, bool, NaN)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value \
            and abs(value) < 1e15:
        return float(value)
    return None


def stamp(t: Any) -> str:
    t = num(t)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def pct(value: Any) -> str:
    """A 0..1 reading from the network as `35%`; `-` when unknown."""
    value = num(value)
    return "-" if value is None or value < 0 else f"{value * 100:.0f}%"


def seconds(value: Any) -> str:
    """A duration from the network as an age; `-` when unknown."""
    value = num(value)
    return "-" if value is None else age(value)


def counts(data: Any) -> str:
    """{name: n} as `name n, name n` (largest first)."""
    if not isinstance(data, dict) or not data:
        return "-"
    items = sorted(((clean(k), int(num(v) or 0)) for k, v in data.items()), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{k} {n}" for k, n in items)


def table(head: Sequence[str], rows: Iterable[Sequence[Any]],
          styles: dict[int, dict[str, str]] | None = None) -> None:
    """Print `rows` under `head`; `styles` maps a column to {cell text: rich style}."""
    rows = [[clean(c) for c in row] for row in rows]
    if fancy():
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text
        out = Table(box=None, header_style="bold", pad_edge=False)
        for h in head:
            out.add_column(h)
        for row in rows:
            cells = [Text(c) for c in row]
            for col, style in (styles or {}).items():
                cells[col].stylize(style.get(row[col], ""))
            out.add_row(*cells)
        Console(highlight=False).print(out)
        return
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]
    for row in [list(head), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
