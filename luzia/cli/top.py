"""`luzia top`: the live monitor (the older file-based queue dispatcher had one like it).
A full-screen rich view of the queue by priority, the agents with load bars coloured by
health, the running jobs with progress bars, and alerts coloured by level; refreshed every
`monitor_interval` (LUZIA_MONITOR_INTERVAL) and at once on a broker event; `q` quits.

Without a terminal, or with NO_COLOR, or with --once, it prints one plain snapshot.
Broker ops: queue.status, agents.status, jobs.list (docs/PROTOCOL.md).
"""

from __future__ import annotations

import os
import select
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import click

from luzia.cli.control import call, connect, dump
from luzia.cli.job_views import needs_input
from luzia.cli.render import (
    HEALTH_STYLE,
    LEVEL_STYLE,
    LOAD_LEVEL_STYLE,
    age,
    agent_troubles,
    bar,
    clean,
    fancy,
    num,
    pct,
    seconds,
)

LEVELS = ("critical", "high", "normal", "low")
ALERT_STYLE = {"CRITICAL": "bold white on red", "RED": "bold red", "YELLOW": "yellow", "GREEN": "green"}
WAIT_YELLOW = 300.0      # oldest pending job waiting longer than this: a yellow alert
WAIT_RED = 1800.0
RUNNING_SHOWN = 20


@dataclass
class Snapshot:
    """What one refresh fetched from the broker."""

    queue: dict[str, Any]
    agents: list[dict[str, Any]]
    running: list[dict[str, Any]]
    taken: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {"queue": self.queue, "agents": self.agents, "running": self.running,
                "alerts": [{"level": lv, "text": t} for lv, t in alerts(self)], "at": self.taken}


def fetch(ctl) -> Snapshot:
    """The three queries of a refresh, answered from the cache within LUZIA_CACHE_TTL, so
    many `luzia top` on one host cost the broker one refresh per TTL between them."""
    from luzia.errors import ProtocolError
    queue = call(ctl, "queue.status")
    agents = call(ctl, "agents.status")
    running = call(ctl, "jobs.list", state=["assigned", "running", "lost"], limit=RUNNING_SHOWN)
    if not isinstance(queue, dict) or not isinstance(agents, list) or not isinstance(running, list):
        raise ProtocolError("the broker sent a malformed status")
    return Snapshot(queue, [a for a in agents if isinstance(a, dict)],
                    [j for j in running if isinstance(j, dict)])


def alerts(snap: Snapshot) -> list[tuple[str, str]]:
    """(level, text), worst first: GREEN/YELLOW/RED/CRITICAL, the older queue dispatcher's
    monitor levels."""
    out = []
    present = [a for a in snap.agents if a.get("health") != "gone"]   # retired: no alert
    live = [a for a in present if a.get("health") not in ("dead", "refused")]
    pending = int(num(snap.queue.get("pending")) or 0)
    if present and not live:
        out.append(("CRITICAL", "every agent is dead: nothing can run"))
    elif not present:
        gone = len(snap.agents)
        out.append(("RED", "no agent has connected" if not gone else
                    f"no live agent ({gone} gone: luzia agents status lists them)"))
    for a in present:
        health, name = a.get("health"), clean(a.get("name"))
        if health == "dead":
            out.append(("RED", f"agent {name} is not beating"))
        elif health == "over-ceiling":
            out.append(("YELLOW", f"agent {name} is over its utilisation ceiling with "
                        f"{int(num(a.get('running')) or 0)} running: it takes no more"))
        elif health == "busy":
            out.append(("YELLOW", f"agent {name}'s host is busy (cpu {pct(a.get('cpu'))}): "
                        "over its ceiling, it runs one job at a time"))
        out += [("RED", line) for line in agent_troubles(a)]
    wait = num(snap.queue.get("oldest_wait")) or 0
    if pending and wait > WAIT_RED:
        out.append(("RED", f"the oldest pending job has waited {age(wait)}"))
    elif pending and wait > WAIT_YELLOW:
        out.append(("YELLOW", f"the oldest pending job has waited {age(wait)}"))
    stalled = [clean(j.get("id")) for j in snap.running if j.get("stalled")]
    if stalled:
        out.append(("YELLOW", f"stalled (no output for a while): {', '.join(stalled[:3])}"))
    waiting = [clean(j.get("id")) for j in snap.running if needs_input(j)]
    if waiting:
        out.append(("YELLOW", f"needs input (luzia reply ID \"...\"): {', '.join(waiting[:3])}"
                    + (f" and {len(waiting) - 3} more" if len(waiting) > 3 else "")))
    order = list(ALERT_STYLE)
    out.sort(key=lambda a: order.index(a[0]))
    return out or [("GREEN", "all good")]


def by_priority(snap: Snapshot) -> dict[str, int]:
    data = snap.queue.get("by_priority")
    data = data if isinstance(data, dict) else {}
    return {p: int(num(data.get(p)) or 0) for p in LEVELS}


def plain(snap: Snapshot) -> str:
    """The snapshot as plain text (no terminal, NO_COLOR, --once)."""
    counts = by_priority(snap)
    lines = [f"luzia top  {time.strftime('%H:%M:%S', time.localtime(snap.taken))}",
             f"QUEUE  pending {int(num(snap.queue.get('pending')) or 0)}  "
             + "  ".join(f"{p} {n}" for p, n in counts.items())
             + f"  oldest wait {seconds(snap.queue.get('oldest_wait'))}", "AGENTS"]
    for a in snap.agents:
        lines.append(f"  {clean(a.get('name'), 20):20} {clean(a.get('health')):12} "
                     f"{bar((num(a.get('load')) or 0) * 100, 10)} {clean(a.get('load_level'), 8):8} "
                     f"{int(num(a.get('running')) or 0)}/{int(num(a.get('slots')) or 0)} slots")
    lines.append("RUNNING")
    for j in snap.running:
        lines.append((f"  {clean(j.get('id'), 24)}  {clean(j.get('project'), 16):16} "
                      f"{clean(j.get('host'), 16):16} {bar(j.get('progress'), 10)}"
                      + ("  NEEDS INPUT" if needs_input(j) else "")).rstrip())
    lines.append("ALERTS")
    lines += [f"  {level:8} {text}" for level, text in alerts(snap)]
    return "\n".join(lines)


def view(snap: Snapshot, interval: float) -> Any:
    """The snapshot as one rich renderable for the full screen."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text
    head = Text(f"luzia top  {time.strftime('%H:%M:%S', time.localtime(snap.taken))}"
                f"  every {interval:g}s  (q quits)", style="bold")
    notes = Text()
    for level, text in alerts(snap):
        notes.append(f"{level:8} {text}\n", style=ALERT_STYLE[level])
    return Group(head,
                 Panel(_queue_grid(snap), title=f"QUEUE  {int(num(snap.queue.get('pending')) or 0)} pending"),
                 Panel(_agents_table(snap), title=f"AGENTS  {len(snap.agents)}"),
                 Panel(_running_table(snap), title=f"RUNNING  {len(snap.running)}"),
                 Panel(notes, title="ALERTS"))


def _queue_grid(snap: Snapshot) -> Any:
    """A bar per priority, as long as its share of the pending jobs, and the oldest wait."""
    from rich.table import Table
    from rich.text import Text
    counts = by_priority(snap)
    most = max(1, *counts.values())
    grid = Table.grid(padding=(0, 2))
    for p, n in counts.items():
        grid.add_row(Text(p, style=LEVEL_STYLE[p]),
                     Text("█" * round(30 * n / most) or "·", style=LEVEL_STYLE[p]), str(n))
    grid.add_row("oldest wait", seconds(snap.queue.get("oldest_wait")), "")
    return grid


def _agents_table(snap: Snapshot) -> Any:
    from rich.table import Table
    from rich.text import Text
    table = Table(box=None, header_style="bold", expand=True)
    for h in ("AGENT", "HEALTH", "LOAD", "LEVEL", "SLOTS", "CPU", "MEM", "CAPABILITIES"):
        table.add_column(h)
    for a in snap.agents:
        style = HEALTH_STYLE.get(str(a.get("health")), "")
        level = clean(a.get("load_level"))
        table.add_row(Text(clean(a.get("name"), 24)), Text(clean(a.get("health")), style=style),
                      Text(bar((num(a.get("load")) or 0) * 100, 20), style=style),
                      Text(level, style=LOAD_LEVEL_STYLE.get(level, "")),
                      f"{int(num(a.get('running')) or 0)}/{int(num(a.get('slots')) or 0)}",
                      pct(a.get("cpu")), pct(a.get("memory")),
                      Text(",".join(clean(c) for c in a.get("capabilities") or [])))
    return table


def _running_table(snap: Snapshot) -> Any:
    from rich.table import Table
    from rich.text import Text
    table = Table(box=None, header_style="bold", expand=True)
    for h in ("JOB", "PROJECT", "USER", "HOST", "PROGRESS", "MESSAGE"):
        table.add_column(h)
    for j in snap.running:
        message = Text("needs input", style="bold yellow") if needs_input(j) else \
            Text(clean(j.get("message"), 40))
        table.add_row(*(Text(clean(j.get(k), 30)) for k in ("id", "project", "user", "host")),
                      Text(bar(j.get("progress"), 20), style="cyan"), message)
    return table


class Keys:
    """The terminal in cbreak mode while the view runs, so `q` arrives without Enter."""

    def __init__(self) -> None:
        import termios
        import tty
        self.fd = sys.stdin.fileno()
        self.saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)

    def quit_pressed(self) -> bool:
        while select.select([self.fd], [], [], 0)[0]:
            if os.read(self.fd, 1) in (b"q", b"Q", b""):
                return True
        return False

    def close(self) -> None:
        import termios
        termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def live(ctl, interval: float) -> None:
    """Full screen until `q`: redraw every `interval` s, or at once on a broker event."""
    import zmq
    from rich.live import Live
    sub = ctl.ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(ctl.cfg.endpoints.events)
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    poller.register(sys.stdin.fileno(), zmq.POLLIN)
    keys = Keys()
    try:
        with Live(view(fetch(ctl), interval), screen=True, auto_refresh=False) as screen:
            while True:
                ready = dict(poller.poll(int(interval * 1000)))
                if sys.stdin.fileno() in ready and keys.quit_pressed():
                    return
                while sub in ready and sub.poll(0):
                    sub.recv_multipart()       # an event only says "look again"
                screen.update(view(fetch(ctl), interval), refresh=True)
    finally:
        keys.close()
        sub.close(0)


@click.command()
@click.option("--interval", type=click.FloatRange(0.1, 3600), metavar="SECONDS",
              help="Refresh period (default: monitor_interval, LUZIA_MONITOR_INTERVAL).")
@click.option("--once", is_flag=True, help="Print one plain snapshot and exit.")
@click.option("--json", "as_json", is_flag=True, help="One snapshot as JSON, with its alerts.")
def top(interval, once, as_json) -> None:
    """Live view of the queue, the agents, the running jobs and alerts (q quits)."""
    with connect() as ctl:
        interval = interval or max(0.1, ctl.cfg.monitor_interval)
        if as_json:
            dump(fetch(ctl).to_dict())
        elif once or not fancy() or not sys.stdin.isatty():
            click.echo(plain(fetch(ctl)))
        else:
            live(ctl, interval)


COMMANDS = (top,)
