"""`luzia agents status|allocate|drain|undrain|forget`: the agents' load and health, where
the next job of each type would go, taking an agent out of the rotation, and forgetting a
retired one (what sinfo/scontrol give). Broker ops: agents.status, agents.allocate,
agents.drain, agents.undrain, agents.forget (docs/PROTOCOL.md).
"""

from __future__ import annotations

from typing import Any

import click

from luzia.cli.control import JSON_HELP, ask, dump
from luzia.cli.render import (
    HEALTH_STYLE,
    LOAD_LEVEL_STYLE,
    agent_troubles,
    clean,
    num,
    pct,
    seconds,
    table,
)

WORST_FIRST = ("refused", "dead", "degraded", "over-ceiling", "busy", "draining", "full", "ok",
               "gone")
DRY_RUN_HELP = "Only say what would happen; change nothing."
SORT_KEYS = {"name": lambda a: str(a.get("name")),
             "load": lambda a: -(num(a.get("load")) or 0),
             "jobs": lambda a: -(num(a.get("running")) or 0),
             "health": lambda a: (WORST_FIRST.index(a["health"]) if a.get("health") in WORST_FIRST
                                  else len(WORST_FIRST))}


@click.group()
def agents() -> None:
    """The agents: load, health, where work goes, draining, forgetting."""


@agents.command("status")
@click.option("--sort-by", type=click.Choice(sorted(SORT_KEYS)), default="name", show_default=True,
              help="Order (load and jobs: highest first; health: worst first).")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def agents_status(sort_by, as_json) -> None:
    """Each agent's slots in use, load score, its level (low, moderate, high, critical) and
    parts, capabilities, GPU, worktrees and their disk use, release, last heartbeat and
    health: ok, busy (its host is over a ceiling with none of our jobs: it takes one), full,
    draining, over-ceiling (runs ours, takes no more), dead, gone (dead longer than
    broker.gone_after: no alert; `luzia agents forget NAME` removes it), refused (a protocol
    older than the broker serves)."""
    found = [a for a in ask("agents.status", list) if isinstance(a, dict)]
    found.sort(key=SORT_KEYS[sort_by])
    dump(found) if as_json else show_status(found)


@agents.command("allocate")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def agents_allocate(as_json) -> None:
    """Where the next job of each type would go and why, and auto-scaling advice."""
    result = ask("agents.allocate", dict)
    dump(result) if as_json else show_allocation(result)


@agents.command("drain")
@click.argument("name")
@click.option("--dry-run", "-n", is_flag=True, help=DRY_RUN_HELP)
@click.option("--json", "as_json", is_flag=True, help="JSON: the agent.")
def agents_drain(name, dry_run, as_json) -> None:
    """Let NAME finish its running jobs and give it no new ones."""
    _drain(name, dry_run, as_json, True)


@agents.command("undrain")
@click.argument("name")
@click.option("--dry-run", "-n", is_flag=True, help=DRY_RUN_HELP)
@click.option("--json", "as_json", is_flag=True, help="JSON: the agent.")
def agents_undrain(name, dry_run, as_json) -> None:
    """Let NAME take new jobs again."""
    _drain(name, dry_run, as_json, False)


@agents.command("forget")
@click.argument("name")
@click.option("--dry-run", "-n", is_flag=True, help=DRY_RUN_HELP)
@click.option("--json", "as_json", is_flag=True, help="JSON: the agent as it was.")
def agents_forget(name, dry_run, as_json) -> None:
    """Remove NAME, a retired host's dead agent, from the broker's fleet and alerts.

    Refused (exit 1) while it beats or still holds jobs (they are requeued after
    broker.lost_grace). Should it say Hello later, it joins as a new agent."""
    result = ask("agents.forget", dict, name=name, dry_run=dry_run or None)
    if as_json:
        dump(result)
        return
    who, dead = clean(result.get("name")), seconds(result.get("dead_for"))
    if dry_run:
        click.echo(f"{who}: would forget it (dead for {dead}, holding no job; dry run: "
                   "nothing was changed)")
    else:
        click.echo(f"{who}: forgotten (it had been dead for {dead})")


def _drain(name: str, dry_run: bool, as_json: bool, draining: bool) -> None:
    """agents.drain or agents.undrain; the broker keeps either in its store, so it outlives
    the agent reconnecting and the broker restarting."""
    result = ask("agents.drain" if draining else "agents.undrain", dict, name=name,
                 dry_run=dry_run or None)
    if as_json:
        dump(result)
        return
    who, running = clean(result.get("name")), int(num(result.get("running")) or 0)
    if dry_run:
        now = "draining" if result.get("draining") else "taking jobs"
        click.echo(f"{who}: would {'drain' if draining else 'undrain'} it (now {now}, "
                   f"{running} jobs running; dry run: nothing was changed)")
    elif draining:
        click.echo(f"{who}: draining, {running} jobs still running "
                   f"(undo with: luzia agents undrain {who})")
    else:
        click.echo(f"{who}: taking jobs again (health {clean(result.get('health'))})")


def show_status(found: list[dict[str, Any]]) -> None:
    if not found:
        print("no agents have connected; start one with: luzia-agent (or luzia-supervisor)")
        return
    table(("AGENT", "HEALTH", "SLOTS", "LOAD", "LEVEL", "LOAD PARTS", "CPU", "MEM", "GPU",
           "CAPABILITIES", "WORKTREES", "RELEASE", "HEARTBEAT"), [_row(a) for a in found],
          {1: HEALTH_STYLE, 4: LOAD_LEVEL_STYLE})
    gone = [clean(a.get("name")) for a in found if a.get("health") == "gone"]
    if gone:
        print(f"\ngone (dead longer than broker.gone_after): {', '.join(gone)}; "
              f"remove with: luzia agents forget {gone[0]}")
    for a in found:
        for line in agent_troubles(a):
            print(line)


def _row(a: dict[str, Any]) -> tuple[Any, ...]:
    parts = a.get("load_parts")
    parts = parts if isinstance(parts, dict) else {}
    return (a.get("name"), a.get("health"),
            f"{int(num(a.get('running')) or 0)}/{int(num(a.get('slots')) or 0)}",
            f"{num(a.get('load')) or 0:.2f}", a.get("load_level") or "-",
            f"cpu {num(parts.get('cpu')) or 0:.2f} mem {num(parts.get('memory')) or 0:.2f} "
            f"queue {num(parts.get('queue')) or 0:.2f}",
            pct(a.get("cpu")), pct(a.get("memory")), gpu_cell(a),
            ",".join(clean(c) for c in a.get("capabilities") or []), worktrees_cell(a), release(a),
            f"{seconds(a.get('heartbeat_age'))} ago")


def worktrees_cell(agent: dict[str, Any]) -> str:
    """`3, 1.2 GB`: its workspaces' worktrees and the disk they (and its mirrors) use."""
    used = num(agent.get("workspace_bytes"))
    count = int(num(agent.get("workspaces")) or 0)
    if used is None or used <= 0 and not count:      # not reported, or none ever made there
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if used >= size:
            return f"{count}, {used / size:.1f} {unit}"
    return f"{count}, {used:.0f} B"


def release(agent: dict[str, Any]) -> str:
    """`0.2.0 (p2)`: its Luzia release and protocol; `? (p1)` for the first release, which
    did not say (docs/PROTOCOL.md, "Versions")."""
    return f"{clean(agent.get('version')) or '?'} (p{int(num(agent.get('protocol')) or 1)})"


def gpu_cell(agent: dict[str, Any]) -> str:
    """`35% util, 10 GB free of 24, 8 reserved`; `-` for an agent without NVML readings."""
    free, total = num(agent.get("gpu_free_gb")), num(agent.get("gpu_total_gb")) or 0
    reserved = num(agent.get("gpu_reserved_gb")) or 0
    if free is None or free < 0:
        return "-"
    return (f"{pct(agent.get('gpu_util'))} util, {free:g} GB free"
            + (f" of {total:g}" if total > 0 else "") + (f", {reserved:g} reserved" if reserved > 0 else ""))


def show_allocation(result: dict[str, Any]) -> None:
    placements = result.get("placements")
    placements = placements if isinstance(placements, list) else []
    table(("TYPE", "NEXT GOES TO", "WHY"),
          [(p.get("type"), p.get("agent") or "(waits)", clean(p.get("why"), 120))
           for p in placements if isinstance(p, dict)])
    recs = result.get("recommendations")
    recs = recs if isinstance(recs, list) else []
    print("")
    print("recommendations:" if recs else "recommendations: none, the fleet fits the load")
    for rec in recs:
        print(f"  - {clean(rec, 200)}")


COMMANDS = (agents,)
