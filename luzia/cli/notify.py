"""`luzia notify status|test`: what luzia-notify has sent, failed and still owes per target,
and a test message to a target (docs/NOTIFY.md).

`status` asks the notifier's own socket (`endpoints.notify`, on the broker's host); when the
notifier is not running it reads the counts from its database instead and says so. `test`
sends from this process, so a target's URL can be tried before the notifier uses it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

import click

from luzia.cli.control import load_config
from luzia.cli.render import age, clean, stamp
from luzia.errors import BrokerUnreachable, LuziaError, ProtocolError, UsageError

COLUMNS = ("TARGET", "SENT", "FAILED", "PENDING", "LAST SENT", "LAST ERROR")


@click.group()
def notify() -> None:
    """Notifications (luzia-notify): status per target, a test message."""


@notify.command()
@click.option("--json", "as_json", is_flag=True, help="JSON: the notifier's status object.")
def status(as_json: bool) -> None:
    """Sent, failed and pending notifications per target, and the notifier's state."""
    cfg = load_config()
    if not cfg.notify.rules:
        if as_json:
            click.echo(json.dumps({"running": False, "rules": 0, "targets": []}, indent=2))
            return
        click.echo(f"no [notify] rules in {cfg.source or 'the config'}: nothing is notified "
                   "(docs/NOTIFY.md)")
        return
    got = _ask(cfg)
    if as_json:
        click.echo(json.dumps(got, indent=2))
        return
    click.echo(_headline(got))
    rows = [COLUMNS] + [_row(t) for t in got.get("targets") or [] if isinstance(t, dict)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS) - 1)]
    for r in rows:
        cells = [c.rjust(w) if 0 < i < 4 else c.ljust(w)       # the counts right-aligned
                 for i, (c, w) in enumerate(zip(r, widths, strict=False))]
        click.echo("  ".join(cells + [r[-1]]).rstrip())


def _ask(cfg: Any) -> dict[str, Any]:
    """The notifier's status; from its database when it does not answer."""
    from luzia.client import Control
    try:
        with Control(cfg, timeout=3.0, endpoint=cfg.endpoints.notify, what="luzia-notify") as ctl:
            got = ctl.call("status")
        if not isinstance(got, dict):
            raise ProtocolError("luzia-notify answered status with a malformed result")
        return {"running": True, **got}
    except BrokerUnreachable as exc:
        why = str(exc).split(";")[0]
    if not os.path.exists(cfg.notify.db):
        raise BrokerUnreachable(f"{why}, and it has no database yet ({cfg.notify.db}); it runs "
                                "under the supervisor on the broker's host: luzia supervisor status")
    from luzia.notify.outbox import Outbox
    box = Outbox(cfg.notify.db, create=False)
    try:
        counts, cursor = box.counts(), box.cursor()
    finally:
        box.close()
    targets = [{"name": name, "pending": c.get("pending", 0), "sent": c.get("sent", 0),
                "failed": c.get("failed", 0), "last_sent": c.get("last_sent"),
                "last_error": c.get("last_error", "")}
               for name, c in sorted({**{n: {} for n in cfg.notify.targets}, **counts}.items())]
    return {"running": False, "why": why, "cursor": cursor, "rules": len(cfg.notify.rules),
            "targets": targets}


def _headline(got: dict[str, Any]) -> str:
    kinds = ", ".join(clean(k) for k in got.get("kinds") or [])
    if not got.get("running"):
        return (f"luzia-notify is not running ({clean(got.get('why'))}); counts from its database, "
                f"cursor #{got.get('cursor')}")
    return (f"luzia-notify pid {got.get('pid')}, up {age(got.get('uptime'))}; broker "
            f"{clean(got.get('broker'), 120)}; {got.get('rules')} rules ({kinds}); "
            f"events read to #{got.get('cursor')}")


def _row(t: dict[str, Any]) -> tuple[str, ...]:
    error = clean(t.get("last_error"), 80)
    if t.get("waits"):
        error = f"{error} (next try in {age(t['waits'])})".strip()
    sent_at = t.get("last_sent")
    return (clean(t.get("name"), 32), str(t.get("sent", 0)), str(t.get("failed", 0)),
            str(t.get("pending", 0)), stamp(sent_at) if sent_at else "-", error)


@notify.command()
@click.argument("target")
@click.option("--dry-run", is_flag=True,
              help="Check the URL with Apprise and say where it would go; send nothing.")
@click.option("--json", "as_json", is_flag=True, help="JSON: {target, url, sent, error}.")
def test(target: str, dry_run: bool, as_json: bool) -> None:
    """Send a test message to TARGET now: a name in [notify.targets], or an Apprise URL.

    Exits 1 with the target's answer when it does not take the message."""
    from luzia.notify.courier import deliver, redacted, valid_url
    cfg = load_config()
    if "://" in target:
        name, url = target, target
    elif target in cfg.notify.targets:
        name, url = target, cfg.notify.targets[target]
    else:
        known = ", ".join(sorted(cfg.notify.targets)) or "(none)"
        raise UsageError(f"no target {target!r} in [notify.targets] (known: {known}); "
                         "or give an Apprise URL")
    shown = redacted(url)
    if dry_run:
        error = "" if valid_url(url) else "not a valid Apprise URL"
    else:
        host = socket.gethostname().split(".")[0]
        error = deliver(url, "luzia: test notification",
                        f"A test from `luzia notify test` on {host} at "
                        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}: target {name} works.", "info")
    if as_json:
        click.echo(json.dumps({"target": name if name != url else shown, "url": shown,
                               "sent": not error and not dry_run, "dry_run": dry_run,
                               "error": error}, indent=2))
        if error:
            click.get_current_context().exit(1)
        return
    if error:
        raise LuziaError(f"{shown} did not take the test message: {error}")
    click.echo(f"{'would send' if dry_run else 'sent'} a test message to {shown}")


COMMANDS = (notify,)
