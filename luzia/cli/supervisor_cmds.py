"""`luzia supervisor status|start|stop|restart|tail`: talk to this host's supervisor."""

from __future__ import annotations

import json
import time

import click


def _call(op: str, **args):
    from luzia.client import Control
    from luzia.config import load
    cfg = load()
    return Control(cfg, endpoint=cfg.endpoints.supervisor, what="supervisor").call(op, **args)


@click.group()
def supervisor() -> None:
    """This host's supervisor and its children (broker, agent)."""


@supervisor.command()
@click.option("--json", "as_json", is_flag=True)
def status(as_json) -> None:
    """Each child's state, pid, uptime and restarts."""
    rows = _call("status")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'NAME':8} {'STATE':9} {'PID':>7} {'UPTIME':>8} {'RESTARTS':>8}  MESSAGE")
    for r in rows:
        click.echo(f"{r['name']:8} {r['state']:9} {r['pid'] or '-':>7} {r['uptime']:>7.0f}s "
                   f"{r['restarts']:>8}  {r['message']}")


def _simple(op: str):
    @click.argument("name")
    def command(name) -> None:
        r = _call(op, name=name)
        click.echo(f"{r['name']}: {r['state']} {r['message']}".rstrip())
    command.__doc__ = f"{op.capitalize()} a child (broker or agent)."
    return supervisor.command(op)(command)


for _op in ("start", "stop", "restart"):
    _simple(_op)


@supervisor.command()
@click.argument("name")
@click.option("-n", "lines", default=50, show_default=True)
@click.option("-f", "follow", is_flag=True, help="Keep printing new lines.")
def tail(name, lines, follow) -> None:
    """The last lines of a child's log."""
    shown = _call("tail", name=name, lines=lines)["lines"]
    click.echo("\n".join(shown))
    while follow:
        time.sleep(0.5)  # polling interval of -f
        now = _call("tail", name=name, lines=200)["lines"]
        k = len(now)
        for i in range(len(now), -1, -1):      # the new lines after the last one shown
            if shown and now[:i][-len(shown[-5:]):] == shown[-5:]:
                k = i
                break
        for line in now[k:]:
            click.echo(line)
        shown = now
