"""How the operator views look: the queue, the agents, history and stats, as tables.

Rich on a terminal (colour by health and level), plain aligned columns otherwise or with
NO_COLOR (render.fancy). Every cell passes through render.clean: it came over the network.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Sequence

from luzia.cli.render import age, clean, fancy, num, stamp

HEALTH_STYLE = {"ok": "green", "full": "yellow", "draining": "cyan", "over-ceiling": "red",
                "dead": "bold red"}
LEVEL_STYLE = {"critical": "bold red", "high": "yellow", "normal": "", "low": "dim"}


def table(head: Sequence[str], rows: Iterable[Sequence[Any]], styles: dict[int, dict[str, str]] | None = None) -> None:
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
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def pct(value: Any) -> str:
    value = num(value)
    return "-" if value is None or value < 0 else f"{value * 100:.0f}%"


def seconds(value: Any) -> str:
    value = num(value)
    return "-" if value is None else age(value)


def counts(data: Any) -> str:
    """{name: n} as `name n, name n` (largest first)."""
    if not isinstance(data, dict) or not data:
        return "-"
    items = sorted(((clean(k), int(num(v) or 0)) for k, v in data.items()), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{k} {n}" for k, n in items)


def queue_status(q: dict[str, Any]) -> None:
    by_priority = q.get("by_priority") if isinstance(q.get("by_priority"), dict) else {}
    print(f"pending     {int(num(q.get('pending')) or 0)}   running {int(num(q.get('running')) or 0)}"
          f"   oldest wait {seconds(q.get('oldest_wait'))}")
    print("by priority " + "  ".join(f"{p} {int(num(by_priority.get(p)) or 0)}"
                                     for p in ("critical", "high", "normal", "low")))
    print(f"by project  {counts(q.get('by_project'))}")
    print(f"by user     {counts(q.get('by_user'))}")
    print(f"rejected    {int(num(q.get('rejected')) or 0)} kept in history, "
          f"{int(num(q.get('rejected_since_start')) or 0)} since the broker started")
    jobs = q.get("jobs")
    if isinstance(jobs, list):
        print("")
        pending_table(jobs) if jobs else print("no pending jobs")


def pending_table(jobs: list[dict[str, Any]]) -> None:
    """Pending jobs in the order they would run."""
    now = time.time()
    table(("#", "ID", "PRIO", "PROJECT", "USER", "TYPE", "WAIT", "WHY"),
          [(i + 1, j.get("id"), j.get("priority"), j.get("project"), j.get("user"), j.get("type"),
            seconds(now - (num(j.get("submitted_at")) or now)), clean(j.get("why"), 60))
           for i, j in enumerate(jobs) if isinstance(j, dict)],
          {2: LEVEL_STYLE})


def agents_status(agents: list[dict[str, Any]]) -> None:
    if not agents:
        print("no agents have connected; start one with: luzia-agent (or luzia-supervisor)")
        return
    rows = []
    for a in agents:
        parts = a.get("load_parts") if isinstance(a.get("load_parts"), dict) else {}
        gpu = gpu_cell(a)
        rows.append((a.get("name"), a.get("health"),
                     f"{int(num(a.get('running')) or 0)}/{int(num(a.get('slots')) or 0)}",
                     f"{num(a.get('load')) or 0:.2f}",
                     f"cpu {num(parts.get('cpu')) or 0:.2f} mem {num(parts.get('memory')) or 0:.2f} "
                     f"queue {num(parts.get('queue')) or 0:.2f}",
                     pct(a.get("cpu")), pct(a.get("memory")), gpu,
                     ",".join(clean(c) for c in a.get("capabilities") or []),
                     f"{seconds(a.get('heartbeat_age'))} ago"))
    table(("AGENT", "HEALTH", "SLOTS", "LOAD", "LOAD PARTS", "CPU", "MEM", "GPU", "CAPABILITIES",
           "HEARTBEAT"), rows, {1: HEALTH_STYLE})


def gpu_cell(agent: dict[str, Any]) -> str:
    """`35% util, 10 GB free of 24, 8 reserved`; `-` for an agent without NVML readings."""
    free, total = num(agent.get("gpu_free_gb")), num(agent.get("gpu_total_gb")) or 0
    reserved = num(agent.get("gpu_reserved_gb")) or 0
    if free is None or free < 0:
        return "-"
    return (f"{pct(agent.get('gpu_util'))} util, {free:g} GB free"
            + (f" of {total:g}" if total > 0 else "") + (f", {reserved:g} reserved" if reserved > 0 else ""))


def allocate(result: dict[str, Any]) -> None:
    placements = result.get("placements") if isinstance(result.get("placements"), list) else []
    table(("TYPE", "NEXT GOES TO", "WHY"),
          [(p.get("type"), p.get("agent") or "(waits)", clean(p.get("why"), 120))
           for p in placements if isinstance(p, dict)])
    recs = result.get("recommendations") if isinstance(result.get("recommendations"), list) else []
    print("")
    print("recommendations:" if recs else "recommendations: none, the fleet fits the load")
    for rec in recs:
        print(f"  - {clean(rec, 200)}")


def history(jobs: list[dict[str, Any]]) -> None:
    if not jobs:
        print("no finished jobs match")
        return
    table(("ID", "STATE", "PROJECT", "USER", "PRIO", "HOST", "FINISHED", "WAIT", "RUN", "REASON"),
          [(j.get("id"), j.get("state"), j.get("project"), j.get("user"), j.get("priority"),
            j.get("host") or "-", stamp(j.get("finished_at")), seconds(j.get("wait")),
            seconds(j.get("run")), clean(j.get("reason"), 40))
           for j in jobs if isinstance(j, dict)],
          {1: {"completed": "green", "failed": "red", "killed": "magenta", "rejected": "red"}})


def stats(result: dict[str, Any]) -> None:
    head = ("JOBS", "COMPLETED", "FAILED", "KILLED", "REJECTED", "RUN TIME", "MEAN WAIT", "MEAN RUN")

    def cells(row: dict[str, Any]) -> tuple:
        return (int(num(row.get("jobs")) or 0), int(num(row.get("completed")) or 0),
                int(num(row.get("failed")) or 0), int(num(row.get("killed")) or 0),
                int(num(row.get("rejected")) or 0), seconds(row.get("run_seconds")),
                seconds(row.get("mean_wait")), seconds(row.get("mean_run")))
    for title, key in (("USER", "by_user"), ("PROJECT", "by_project")):
        rows = [r for r in result.get(key) or [] if isinstance(r, dict)]
        table((title, *head), [(r.get("name"), *cells(r)) for r in rows])
        print("")
    total = result.get("total") if isinstance(result.get("total"), dict) else {}
    table(("ALL", *head), [("all", *cells(total))])

