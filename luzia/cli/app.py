"""The `luzia` commands other than submitting (that is luzia/cli/submit.py).

Exit codes: 0 ok, 1 error, 2 usage (unknown project, bad option, unknown job),
3 broker not reachable, 4 protocol error, 73 state directory not writable.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from typing import Any

import click

from luzia import __version__
from luzia.cli import render
from luzia.errors import LuziaError

HELP = """Dispatch AI-agent tasks to a fleet of GPU hosts.

\b
Submit (returns at once):
  luzia PROJECT TASK... [--priority critical|high|normal|low] [--type T]
        [--user U] [--timeout S] [--max-retries N] [--after ID[,ID]]
        [--metadata JSON] [--json]

\b
Exit codes: 0 ok, 1 error, 2 usage (unknown project, bad option, unknown
job), 3 broker not reachable, 4 protocol error, 73 state dir not writable.
"""


@click.group(help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="luzia")
def cli() -> None:
    pass


def _cfg():
    from luzia.config import load
    return load()


def _control():
    from luzia.client import Control
    return Control(_cfg())


def _dump(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=_bytes))


def _bytes(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    raise TypeError(type(value).__name__)


@cli.command()
@click.argument("job_id", required=False)
@click.option("--watch", "-w", is_flag=True, help="Follow the job live until it ends.")
@click.option("--json", "as_json", is_flag=True, help="JSON: one object for a job, a list for many.")
@click.option("--limit", "-n", default=20, show_default=True, help="How many recent jobs.")
@click.option("--state", "-s", multiple=True, help="Only jobs in this state (repeatable).")
@click.option("--project", "-p", help="Only this project's jobs.")
@click.option("--user", "-u", help="Only this user's jobs.")
def jobs(job_id, watch, as_json, limit, state, project, user) -> None:
    """List recent jobs, or show one (JOB_ID may be a unique prefix)."""
    ctl = _control()
    if job_id is None:
        found = ctl.call("jobs.list", limit=limit, state=list(state), project=project, user=user)
        _dump(found) if as_json else render.jobs_table(found)
        return
    if watch:
        _watch(ctl, job_id, as_json)
        return
    job = ctl.call("jobs.get", id=job_id)
    _dump(job) if as_json else render.job_detail(job)


def _watch(ctl, job_id: str, as_json: bool) -> None:
    import zmq
    from luzia import protocol
    cfg = ctl.cfg
    sub = ctl.ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"job.")
    sub.connect(cfg.endpoints.events)

    def wait_event() -> None:
        if sub.poll(cfg.monitor_interval * 1000):
            while sub.poll(0):
                try:
                    protocol.decode_event(sub.recv_multipart())
                except LuziaError:
                    pass

    job = ctl.call("jobs.get", id=job_id)
    try:
        if render.fancy() and not as_json:
            from rich.live import Live
            from rich.text import Text
            with Live(Text("\n".join(render.job_lines(job))), refresh_per_second=8) as live:
                while job["state"] not in render.TERMINAL:
                    wait_event()
                    job = ctl.call("jobs.get", id=job["id"])
                    live.update(Text("\n".join(render.job_lines(job))))
            return
        last = None
        while True:
            line = (json.dumps({k: job[k] for k in ("id", "state", "progress", "message", "host")})
                    if as_json else render.job_lines(job)[0])
            if line != last:
                click.echo(line)
                last = line
            if job["state"] in render.TERMINAL:
                break
            wait_event()
            job = ctl.call("jobs.get", id=job["id"])
        if not as_json:
            click.echo("\n".join(render.job_lines(job)[1:]))
    finally:
        sub.close(0)


@cli.command()
@click.argument("job_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the job ends.")
def logs(job_id, follow) -> None:
    """Print a job's output (fetched from its agent through the broker)."""
    from luzia.text import strip_terminal
    ctl = _control()
    raw = sys.stdout.isatty()
    out = sys.stdout.buffer
    job = ctl.call("jobs.get", id=job_id)
    offset = 0
    while True:
        res = ctl.call("logs.read", id=job["id"], offset=offset, limit=65536)
        data = res["data"]
        if res["source"] == "broker" and offset:
            data = b""      # the broker only has the tail, already shown
        if data:
            out.write(data if raw else strip_terminal(data.decode(errors="replace")).encode())
            out.flush()
            offset = res["offset"] + len(res["data"])
        if res["source"] == "broker" and not offset:
            offset = len(res["data"]) or 1
        more = res["source"] == "agent" and offset < res["size"]
        if more:
            continue
        if not follow or res["state"] in render.TERMINAL:
            if follow and res["source"] == "agent":   # one last read after the end
                final = ctl.call("logs.read", id=job["id"], offset=offset)
                if final["data"]:
                    out.write(final["data"] if raw else strip_terminal(
                        final["data"].decode(errors="replace")).encode())
            return
        time.sleep(0.3)  # polling interval of -f


@cli.command()
@click.argument("job_ids", nargs=-1, required=True)
def cancel(job_ids) -> None:
    """Cancel jobs: pending ones at once, running ones through their agent."""
    for res in _control().call("jobs.cancel", ids=list(job_ids)):
        click.echo(f"{res['id']}: {res['result']}")


@cli.command()
@click.argument("job_id")
def attach(job_id) -> None:
    """Attach to a running job's tmux session (Ctrl-b d detaches)."""
    ctl = _control()
    job = ctl.call("jobs.get", id=job_id)
    cfg = ctl.cfg
    session = f"luzia-{job['id']}"
    if job["state"] in render.TERMINAL:
        click.echo(f"job {job['id']} is {job['state']}; its output: luzia logs {job['id']}")
        return
    if job["state"] == "pending":
        click.echo(f"job {job['id']} has not started yet ({job.get('why') or 'pending'})")
        return
    if job["host"] != cfg.agent.name:
        click.echo(f"job {job['id']} runs on {job['host']}; there: "
                   f"tmux -L {cfg.agent.tmux_socket} attach -t {session}")
        return
    tmux = shutil.which("tmux")
    if not tmux:
        raise LuziaError("tmux is not installed here; see the output with: luzia logs -f " + job["id"])
    os.execv(tmux, [tmux, "-L", cfg.agent.tmux_socket, "attach", "-t", session])


@cli.group()
def config() -> None:
    """The effective configuration."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True)
def config_show(as_json) -> None:
    """Print the effective config and where it was read from."""
    from luzia.config import config_candidates
    cfg = _cfg()
    data = cfg.to_dict()
    data["candidates"] = [str(p) for p in config_candidates()]
    if as_json:
        _dump(data)
        return
    click.echo(f"# read from: {cfg.source or '(no config file; built-in defaults)'}")
    click.echo(f"# looked for: {', '.join(data.pop('candidates'))}")
    data.pop("source", None)
    click.echo(_toml(data))


def _toml(data: dict[str, Any], prefix: str = "") -> str:
    scalars, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            scalars.append(f"{key} = {json.dumps(value)}")
    out = "\n".join(scalars)
    for key, value in tables:
        name = f"{prefix}{key}"
        body = _toml(value, f"{name}.")
        out += f"\n\n[{name}]\n{body}" if body else f"\n\n[{name}]"
    return out.strip()


try:
    from luzia.cli.supervisor_cmds import supervisor
    cli.add_command(supervisor)
except ImportError:  # pragma: no cover - the supervisor commands are optional
    pass


def run_app(args: list[str]) -> int:
    try:
        cli.main(args=args, prog_name="luzia", standalone_mode=False)
    except click.exceptions.Abort:
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except LuziaError as exc:
        click.echo(f"luzia: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0
