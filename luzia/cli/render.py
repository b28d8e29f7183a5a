"""How jobs look in a terminal: rich on a TTY, plain text otherwise (or with NO_COLOR).
Everything that came from a task or a program is neutralised before it is shown."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from luzia.text import one_line

STATE_STYLE = {"pending": "yellow", "assigned": "cyan", "running": "cyan", "completed": "green",
               "failed": "red", "killed": "magenta", "rejected": "red", "lost": "red"}
TERMINAL = {"completed", "failed", "killed", "rejected"}


def fancy() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def bar(percent: float, width: int = 20) -> str:
    """The seeds' bar: [██████░░░░░░░░░░░░░░]  30%  (blank percent when unknown)."""
    if percent is None or percent < 0:
        return "[" + "·" * width + "]     "
    filled = round(width * min(100.0, percent) / 100)
    return "[" + "█" * filled + "░" * (width - filled) + f"] {percent:3.0f}%"


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def stamp(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def note(job: dict[str, Any]) -> str:
    """The one thing to say about a job in a list: why pending, the message, or the reason."""
    if job["state"] == "pending":
        return job.get("why") or job.get("reason") or ""
    if job["state"] in TERMINAL and job["state"] != "completed":
        return job.get("reason") or ""
    return job.get("message") or job.get("reason") or ""


def jobs_table(jobs: list[dict[str, Any]]) -> None:
    now = time.time()
    if not jobs:
        print("no jobs yet; submit one with: luzia demo \"hello\"")
        return
    rows = [(j["id"], j["state"], j["project"], j["user"], j["priority"],
             age(now - j["submitted_at"]), bar(j.get("progress", -1), 10), j.get("host") or "-",
             one_line(note(j), 50)) for j in jobs]
    head = ("ID", "STATE", "PROJECT", "USER", "PRIO", "AGE", "PROGRESS", "HOST", "NOTE")
    if fancy():
        from rich.console import Console
        from rich.table import Table
        table = Table(box=None, header_style="bold")
        for h in head:
            table.add_column(h, overflow="fold" if h == "NOTE" else "ellipsis", no_wrap=h != "NOTE")
        for row in rows:
            cells = list(row)
            cells[1] = f"[{STATE_STYLE.get(row[1], 'white')}]{row[1]}[/]"
            table.add_row(*[c if i == 1 else _escape(c) for i, c in enumerate(cells)])
        Console().print(table)
    else:
        widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
        for r in [head, *rows]:
            print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    counts: dict[str, int] = {}
    for j in jobs:
        counts[j["state"]] = counts.get(j["state"], 0) + 1
    print("\n" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))


def job_lines(job: dict[str, Any]) -> list[str]:
    """One job in detail, as plain lines."""
    now = time.time()
    started, finished = job.get("started_at"), job.get("finished_at")
    wait = (started or finished or now) - job["submitted_at"]
    run = ((finished or now) - started) if started else None
    lines = [
        f"{job['state'].upper():9} {bar(job.get('progress', -1))} {one_line(job.get('message') or '', 60)}",
        f"job       {job['id']}  (attempt {job.get('attempt', 0)}"
        f"{', retries ' + str(job['retries']) if job.get('retries') else ''})",
        f"project   {job['project']}   user {job['user']}   priority {job['priority']}   type {job['type']}",
        f"host      {job.get('host') or '-'}",
        f"task      {one_line(job.get('task', ''), 100)}",
        f"submitted {stamp(job['submitted_at'])}   waited {age(wait)}"
        + (f"   ran {age(run)}" if run is not None else ""),
    ]
    if finished:
        lines.append(f"finished  {stamp(finished)}   exit code {job.get('exit_code')}")
    if job["state"] == "pending" and job.get("why"):
        lines.append(f"why       {one_line(job['why'], 100)}")
    elif job.get("reason"):
        lines.append(f"reason    {one_line(job['reason'], 100)}")
    if job.get("stalled"):
        lines.append("stalled   no output for a while")
    tail = job.get("tail") or []
    if tail:
        lines.append("output (last lines):")
        lines += ["  " + one_line(t, 160) for t in tail[-10:]]
    return lines


def job_detail(job: dict[str, Any]) -> None:
    lines = job_lines(job)
    if fancy():
        from rich.console import Console
        console = Console()
        style = STATE_STYLE.get(job["state"], "white")
        console.print(f"[bold {style}]{_escape(lines[0])}[/]")
        for line in lines[1:]:
            console.print(_escape(line), highlight=False)
    else:
        print("\n".join(lines))


def _escape(text: str) -> str:
    from rich.markup import escape
    return escape(text)
