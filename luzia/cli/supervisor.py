"""`luzia supervisor status|start|stop|restart|tail`: talk to this host's supervisor over its
control socket (endpoints.supervisor; the operations are documented in
luzia/supervisor/control.py)."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from luzia.cli.control import load_config

FOLLOW_INTERVAL = 0.5  # seconds between polls of `tail -f`


class Supervisor:
    """A connection to the supervisor's control socket."""

    def __init__(self) -> None:
        from luzia.client import Control
        self.cfg = load_config()
        self.endpoint = self.cfg.endpoints.supervisor
        self.control = Control(self.cfg, endpoint=self.endpoint, what="supervisor")

    def call(self, op: str, **args: Any) -> Any:
        from luzia.errors import BrokerUnreachable
        try:
            return self.control.call(op, **args)
        except BrokerUnreachable:
            raise BrokerUnreachable(f"supervisor not reachable at {self.endpoint}; start it "
                                    "with `luzia-supervisor` (or `make run`)") from None


def _call(op: str, **args: Any) -> Any:
    return Supervisor().call(op, **args)


@click.group()
def supervisor() -> None:
    """This host's supervisor and its programs (broker, agent, [supervisor.programs])."""


def _uptime(seconds: float) -> str:
    if not seconds:
        return "-"
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}:{s % 60:02d}"
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s < 86400 else f"{s // 86400}d{s % 86400 // 3600}h"


@supervisor.command()
@click.option("--json", "as_json", is_flag=True, help="A list of {name, state, pid, uptime, restarts}.")
def status(as_json: bool) -> None:
    """Each program's state, pid, uptime and restarts."""
    rows = _call("status")
    if as_json:
        keys = ("name", "state", "pid", "uptime", "restarts")
        click.echo(json.dumps([{k: r.get(k) for k in keys} for r in rows], indent=2))
        return
    click.echo(f"{'NAME':10} {'STATE':9} {'PID':>7} {'UPTIME':>8} {'RESTARTS':>8}  MESSAGE")
    for r in rows:
        click.echo(f"{r['name']:10} {r['state']:9} {r['pid'] or '-':>7} {_uptime(r['uptime']):>8} "
                   f"{r['restarts']:>8}  {r.get('message') or ''}".rstrip())


def _row(r: dict[str, Any]) -> None:
    pid = f" (pid {int(r['pid'])})" if r["pid"] else ""
    message = f"  {r['message']}" if r.get("message") else ""
    click.echo(f"{r['name']}: {r['state']}{pid}{message}")


DRY_RUN_HELP = "Only say what would happen; change nothing."
WOULD = {   # what each command would do to a program in a state, for --dry-run
    "start": lambda r: (f"would leave it: it is {r['state']}" if r["state"] in ("running", "starting")
                        else f"would start it now (it is {r['state']})"),
    "stop": lambda r: (f"would stop it (SIGTERM, then SIGKILL after supervisor.stop_timeout) and "
                       f"keep it stopped (it is {r['state']})" if r["pid"]
                       else f"would keep it stopped (it is {r['state']}, no process)"),
    "restart": lambda r: (f"would stop it and start it again (it is {r['state']})" if r["pid"]
                          else f"would start it now (it is {r['state']})"),
}


def _act(op: str, name: str, dry_run: bool) -> None:
    if not dry_run:
        _row(_call(op, name=name))
        return
    rows = {r.get("name"): r for r in _call("status")}
    if name not in rows:
        from luzia.errors import NotFound
        raise NotFound(f"no program {name!r} here; programs: {', '.join(rows) or '(none)'}")
    click.echo(f"{name}: {WOULD[op](rows[name])}; dry run: nothing was changed")


@supervisor.command()
@click.argument("name")
@click.option("--dry-run", "-n", is_flag=True, help=DRY_RUN_HELP)
def start(name: str, dry_run: bool) -> None:
    """Start NAME now (also out of fatal or an operator's stop)."""
    _act("start", name, dry_run)


@supervisor.command()
@click.argument("name")
@click.option("--dry-run", "-n", is_flag=True, help=DRY_RUN_HELP)
def stop(name: str, dry_run: bool) -> None:
    """Stop NAME and keep it stopped until `start` or `restart`."""
    _act("stop", name, dry_run)


@supervisor.command()
@click.argument("name")
@click.option("--dry-run", "-n", is_flag=True, help=DRY_RUN_HELP)
def restart(name: str, dry_run: bool) -> None:
    """Stop NAME and start it again."""
    _act("restart", name, dry_run)


@supervisor.command()
@click.argument("name")
@click.option("-n", "lines", default=50, show_default=True, type=click.IntRange(1, 2000),
              help="How many lines.")
@click.option("-f", "follow", is_flag=True, help="Keep printing new lines (Ctrl-C ends).")
@click.option("--json", "as_json", is_flag=True, help="JSON: {lines: [text], seq} (not with -f).")
def tail(name: str, lines: int, follow: bool, as_json: bool) -> None:
    """The last lines of NAME's log."""
    if follow and as_json:
        raise click.UsageError("--json and -f do not go together")
    sup = Supervisor()
    got = sup.call("tail", name=name, lines=lines)
    if as_json:
        click.echo(json.dumps(got, indent=2))
        return
    for line in got["lines"]:
        click.echo(line)
    seq = got["seq"]
    try:
        while follow:
            time.sleep(FOLLOW_INTERVAL)  # the polling interval of -f, not a wait for an event
            got = sup.call("tail", name=name, lines=2000, after=seq)
            for line in got["lines"]:
                click.echo(line)
            seq = got["seq"]
    except KeyboardInterrupt:
        pass


COMMANDS = (supervisor,)
