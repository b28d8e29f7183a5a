"""How jobs look in a terminal: rich on a TTY, plain text otherwise (or with NO_COLOR).

Everything that came from a task, a program or the network is passed through `clean`
before it is shown, so an escape sequence in a task cannot colour or move `luzia jobs`.
"""

from __future__ import annotations

import os
import re
import sys
import time
from typing import Any

from luzia.states import TERMINAL_NAMES
from luzia.text import one_line

STATE_STYLE = {"pending": "yellow", "assigned": "cyan", "running": "cyan", "completed": "green",
               "failed": "red", "killed": "magenta", "rejected": "red"}
TERMINAL = TERMINAL_NAMES
# the start of an escape sequence that is not finished yet (CSI or OSC), or a lone \r
PARTIAL_ESCAPE = re.compile(r"(\x1b(\[[0-9;?]*[ -/]*|\][^\x07\x1b]*\x1b?)?|\r)\Z")
TABLE_HEAD = ("ID", "STATE", "PROJECT", "USER", "PRIO", "AGE", "PROGRESS", "HOST", "NOTE")


def fancy(stream: Any = None) -> bool:
    """Colour and animation: only on a terminal, and never with NO_COLOR set."""
    stream = stream or sys.stdout
    return stream.isatty() and not os.environ.get("NO_COLOR")


def clean(value: Any, width: int = 0) -> str:
    """A value from outside as one safe line (no control characters, no escapes)."""
    return one_line("" if value is None else str(value), width)


def bar(percent: Any, width: int = 20) -> str:
    """The seeds' bar: `[██████░░░░░░░░░░░░░░] 30%`; dots when the progress is unknown."""
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


def note(job: dict[str, Any]) -> str:
    """The one thing to say about a job in a list: why pending, the message, or the reason."""
    state = clean(job.get("state"))
    if state == "pending":
        return job.get("why") or job.get("reason") or ""
    if state in TERMINAL and state != "completed":
        return job.get("reason") or job.get("message") or ""
    return job.get("message") or job.get("reason") or ""


def table_rows(jobs: list[dict[str, Any]], now: float | None = None) -> list[tuple[str, ...]]:
    """The list view's cells, every one of them cleaned."""
    now = time.time() if now is None else now
    rows = []
    for j in jobs:
        submitted = num(j.get("submitted_at"))
        rows.append((clean(j.get("id"), 24), state_cell(j, now), clean(j.get("project"), 24),
                     clean(j.get("user"), 16), clean(j.get("priority"), 10),
                     age(now - submitted) if submitted is not None else "-",
                     bar(j.get("progress"), 10), clean(j.get("host"), 20) or "-",
                     clean(note(j), 50)))
    return rows


def stalled_for(job: dict[str, Any], now: float) -> str:
    """How long a running job's output has not changed ("" unless it is flagged stalled)."""
    if not job.get("stalled") or clean(job.get("state")) != "running":
        return ""
    since = num(job.get("stalled_since"))
    return age(now - since) if since is not None else "?"


def state_cell(job: dict[str, Any], now: float) -> str:
    """`running`, or `running (stalled 5m)` for a running job without output for a while."""
    stalled = stalled_for(job, now)
    state = clean(job.get("state"), 12)
    return f"{state} (stalled {stalled})" if stalled else state


def summary(jobs: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for j in jobs:
        state = clean(j.get("state"))
        counts[state] = counts.get(state, 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def plain_table(jobs: list[dict[str, Any]]) -> str:
    if not jobs:
        return "no jobs yet; submit one with: luzia PROJECT \"what to do\""
    rows = [TABLE_HEAD, *table_rows(jobs)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_HEAD))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines) + "\n\n" + summary(jobs)


def rich_table(jobs: list[dict[str, Any]]) -> Any:
    """The list view as a rich renderable (for print and for Live)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text
    if not jobs:
        return Text(plain_table(jobs))
    table = Table(box=None, header_style="bold", pad_edge=False)
    for h in TABLE_HEAD:
        table.add_column(h, overflow="fold" if h == "NOTE" else "ellipsis", no_wrap=h != "NOTE")
    for row in table_rows(jobs):
        # Text cells, never markup: a task's "[red]" is text like any other
        cells = [Text(c) for c in row]
        cells[1].stylize(STATE_STYLE.get(row[1].split(" ")[0], ""))
        table.add_row(*cells)
    return Group(table, Text(""), Text(summary(jobs)))


def jobs_table(jobs: list[dict[str, Any]]) -> None:
    if fancy():
        from rich.console import Console
        Console().print(rich_table(jobs))
    else:
        print(plain_table(jobs))


def status_line(job: dict[str, Any]) -> str:
    """`RUNNING [██████░░░░░░░░░░░░░░] 30% message` — the head of the detail view."""
    return f"{clean(job.get('state')).upper()} {bar(job.get('progress'))} " \
           f"{clean(job.get('message'), 60)}".rstrip()


def job_lines(job: dict[str, Any], now: float | None = None) -> list[str]:
    """One job in detail, as plain lines."""
    now = time.time() if now is None else now
    submitted = num(job.get("submitted_at")) or now
    started, finished = num(job.get("started_at")), num(job.get("finished_at"))
    waited = (started or finished or now) - submitted
    ran = ((finished or now) - started) if started else None
    retries = int(num(job.get("retries")) or 0)
    more = f", {retries} retries" if retries else ""
    lines = [
        status_line(job),
        f"job        {clean(job.get('id'))}  (attempt {int(num(job.get('attempt')) or 0)}"
        f" of {1 + int(num(job.get('max_retries')) or 0)}{more})",
        f"project    {clean(job.get('project'))}   user {clean(job.get('user'))}   "
        f"priority {clean(job.get('priority'))}   type {clean(job.get('type')) or '-'}",
        f"host       {clean(job.get('host')) or '-'}",
        f"task       {clean(job.get('task'), 200)}",
        f"submitted  {stamp(submitted)}   waited {age(waited)}",
    ]
    if started:
        lines.append(f"started    {stamp(started)}   " + (f"ran {age(ran)}" if finished
                                                            else f"running for {age(ran)}"))
    if finished:
        code = job.get("exit_code")
        lines.append(f"finished   {stamp(finished)}   exit code "
                     f"{'-' if code is None else clean(code)}")
    if job.get("message"):
        lines.append(f"message    {clean(job['message'], 200)}")
    if clean(job.get("state")) == "pending" and job.get("why"):
        lines.append(f"why        {clean(job['why'], 200)}")
    elif job.get("reason"):
        lines.append(f"reason     {clean(job['reason'], 200)}")
    if stalled_for(job, now):
        lines.append(f"stalled    no output for {stalled_for(job, now)} (snapshot: "
                     "stall-snapshot.txt in its job directory)")
    attempts = job.get("attempts")
    if isinstance(attempts, list) and len(attempts) > 1:
        lines.append("attempts:")
        lines += ["  " + attempt_line(a) for a in attempts[-10:] if isinstance(a, dict)]
    tail = job.get("tail")
    tail = tail if isinstance(tail, list) else []
    if tail:
        lines.append("output (last lines):")
        lines += ["  " + clean(t, 200) for t in tail[-10:]]
    return lines


def attempt_line(attempt: dict[str, Any]) -> str:
    """`#2 gpu1  exit 1  timeout` for one past or current attempt of a job."""
    code = num(attempt.get("exit_code"))
    ended = "running" if code is None and not attempt.get("finished_at") else \
        f"exit {'-' if code is None else int(code)}"
    return (f"#{int(num(attempt.get('attempt')) or 0)} {clean(attempt.get('host'), 30) or '-'}  "
            f"{stamp(attempt.get('started_at'))}  {ended}  {clean(attempt.get('reason'), 80)}").rstrip()


def rich_job(job: dict[str, Any]) -> Any:
    from rich.text import Text
    lines = job_lines(job)
    text = Text(lines[0], style=f"bold {STATE_STYLE.get(clean(job.get('state')), '')}".strip())
    for line in lines[1:]:
        text.append("\n" + line)
    return text


def job_detail(job: dict[str, Any]) -> None:
    if fancy():
        from rich.console import Console
        Console(highlight=False).print(rich_job(job))
    else:
        print("\n".join(job_lines(job)))


def change_line(job: dict[str, Any]) -> str:
    """One line per change for --watch without a terminal."""
    return f"{stamp(time.time())}  {clean(job.get('id'))}  {status_line(job)}"


class LogSink:
    """Where `luzia logs` writes a job's bytes: raw to a terminal (the user asked to see the
    program's own colours); without one, escapes and control characters stripped — across
    chunk boundaries, so a sequence or a UTF-8 character split between two reads still goes."""

    HOLD = 64     # an escape sequence longer than this is not waited for

    def __init__(self, stream: Any = None) -> None:
        import codecs
        self.stream = stream or sys.stdout
        self.raw = self.stream.isatty()
        self.out = self.stream.buffer
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.held = ""

    def write(self, data: bytes, final: bool = False) -> None:
        if self.raw:
            self.out.write(data)
            self.out.flush()
            return
        from luzia.text import strip_terminal
        text = self.held + self.decoder.decode(data, final)
        self.held = ""
        if not final:
            # a trailing \r may be half of \r\n; a trailing escape may continue in the next read
            cut = len(text) - 1 if text.endswith("\r") else text.rfind("\x1b")
            if cut >= 0 and len(text) - cut < self.HOLD and PARTIAL_ESCAPE.match(text, cut):
                text, self.held = text[:cut], text[cut:]
        if text:
            self.out.write(strip_terminal(text).encode())
            self.out.flush()

    def close(self) -> None:
        self.write(b"", final=True)
