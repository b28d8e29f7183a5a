"""The `luzia` commands other than submitting (that is luzia/cli/submit.py).

Every command talks to the broker through luzia.client.Control (control requests from
docs/PROTOCOL.md); results came over the network, so they are checked before use and
every piece of text shown passes through render.clean.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import click

from luzia import __version__, layout
from luzia.cli import render
from luzia.errors import LuziaError, ProtocolError
from luzia.states import JOB_STATE_NAMES

HELP = """Dispatch AI-agent tasks to a fleet of GPU hosts.

\b
Submit (returns at once, prints agent:PROJECT:JOB_ID):
  luzia PROJECT TASK... [--priority critical|high|normal|low] [--type T]
        [--user U] [--timeout S] [--max-retries N] [--after ID[,ID]]
        [--metadata JSON] [--json]
  (luzia PROJECT --help for the details)

\b
Operators: luzia queue status|add|flush, luzia agents status|allocate|drain|undrain,
  luzia top, luzia history, luzia stats, luzia import pending-requests|beads
  (every query takes --json; no colour without a terminal or with NO_COLOR)

\b
Shell completion (click): add to ~/.bashrc (or zsh/fish likewise)
  eval "$(_LUZIA_COMPLETE=bash_source luzia)"
  zsh: eval "$(_LUZIA_COMPLETE=zsh_source luzia)"
  fish: _LUZIA_COMPLETE=fish_source luzia | source

\b
Exit codes:
  0   ok
  1   error
  2   usage: bad option, unknown project, job not found
  3   broker not reachable
  4   protocol error (a malformed answer)
  73  state dir not writable
  75  submission rejected by the broker (queue full, unknown dependency)
"""

SPOOL_PATIENCE = 2.0   # seconds `jobs ID` waits for a job the broker has not taken from the spool
LOG_CHUNK = 65536      # bytes per logs.read
LOG_POLL = 0.3         # seconds between reads of `logs -f`
LIVE = ("pending", "assigned", "running", "lost")   # states in which output may still grow


@click.group(help=HELP, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="luzia")
@click.option("--config", "config_path", envvar="LUZIA_CONFIG", show_envvar=True, metavar="PATH",
              type=click.Path(dir_okay=False), help="Config file (default: the first of "
              "$XDG_CONFIG_HOME/luzia/luzia.toml, /etc/luzia/luzia.toml).")
@click.option("--control-timeout", envvar="LUZIA_CONTROL_TIMEOUT", show_envvar=True, default=3.0, show_default=True,
              type=click.FloatRange(0.1, 600), metavar="SECONDS",
              help="How long to wait for the broker's answer.")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, control_timeout: float) -> None:
    if config_path:   # config.load reads it from the environment, like every component
        os.environ["LUZIA_CONFIG"] = config_path
    ctx.obj = {"timeout": control_timeout}
    if ctx.invoked_subcommand is None:     # plain `luzia`: the help, and success
        click.echo(ctx.get_help())


def _cfg():
    from luzia.config import load
    return load()


def _control():
    from luzia.client import Control
    timeout = (click.get_current_context().find_object(dict) or {}).get("timeout", 3.0)
    return Control(_cfg(), timeout=timeout)


def _dump(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=_bytes))


def _bytes(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    raise TypeError(type(value).__name__)


def _job(value: Any, op: str) -> dict[str, Any]:
    """A job object from the broker, with the fields the views branch on checked."""
    if not isinstance(value, dict) or not isinstance(value.get("id"), str) \
            or not isinstance(value.get("state"), str):
        raise ProtocolError(f"the broker answered {op} with something that is not a job")
    return value


def _jobs(value: Any, op: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ProtocolError(f"the broker answered {op} with something that is not a list of jobs")
    return [_job(v, op) for v in value]


JOBS_HELP = """List recent jobs, or show one job in detail.

JOB_ID may be a unique prefix (6+ characters). --watch follows the view live until the
job (or every listed job) has ended, then prints the final view; it exits 0 whatever the
job's end state (completed, failed, killed, rejected): the state is shown."""


@cli.command(help=JOBS_HELP)
@click.argument("job_id", required=False)
@click.option("--watch", "-w", is_flag=True, help="Follow live until the job(s) ended.")
@click.option("--json", "as_json", is_flag=True,
              help="JSON: one object for a job, a list for many (with --watch: a line per change).")
@click.option("--limit", "-n", default=20, show_default=True, envvar="LUZIA_JOBS_LIMIT", show_envvar=True,
              type=click.IntRange(1, 10_000), help="How many recent jobs.")
@click.option("--state", "-s", multiple=True, envvar="LUZIA_JOBS_STATE", show_envvar=True,
              type=click.Choice(JOB_STATE_NAMES),
              help="Only jobs in this state (repeatable).")
@click.option("--project", "-p", envvar="LUZIA_JOBS_PROJECT", show_envvar=True, help="Only this project's jobs.")
@click.option("--user", "-u", envvar="LUZIA_JOBS_USER", show_envvar=True, help="Only this user's jobs.")
def jobs(job_id, watch, as_json, limit, state, project, user) -> None:
    ctl = _control()
    first: Any = None
    if job_id is None:
        filters: dict[str, Any] = {"limit": limit}
        if state:
            filters["state"] = list(state)
        if project:
            filters["project"] = project
        if user:
            filters["user"] = user

        def fetch() -> Any:
            return _jobs(ctl.call("jobs.list", **filters), "jobs.list")
    else:
        first = _get(ctl, job_id)

        def fetch() -> Any:
            return _job(ctl.call("jobs.get", id=first["id"]), "jobs.get")
    try:
        if watch:
            _watch(ctl, fetch, as_json)
            return
        found = first if first is not None else fetch()
        if as_json:
            _dump(found)
        elif job_id is None:
            render.jobs_table(found)
        else:
            render.job_detail(found)
    finally:
        ctl.close()


def _get(ctl, job_id: str) -> dict[str, Any]:
    """jobs.get, patient with a job submitted a moment ago: while its spool file is still
    here the broker has not taken it yet, so ask again for a little while."""
    from luzia.errors import NotFound
    from luzia.ids import JOB_ID_RE
    spooled = ctl.cfg.spool_dir / f"{job_id}.job" if JOB_ID_RE.match(job_id) else None
    deadline = time.monotonic() + SPOOL_PATIENCE
    while True:
        try:
            return _job(ctl.call("jobs.get", id=job_id), "jobs.get")
        except NotFound:
            if spooled is None or not spooled.exists():
                raise
            if time.monotonic() > deadline:
                raise NotFound(f"job {job_id} is still in the spool ({spooled.parent}); "
                               "the broker has not taken it yet") from None
        time.sleep(0.05)  # polling step while the broker takes the job


def _ended(view: Any) -> bool:
    return all(j.get("state") in render.TERMINAL for j in (view if isinstance(view, list) else [view]))


def _watch(ctl, fetch, as_json: bool) -> None:
    """Follow a view until it has ended: a rich Live on a terminal, else a line per change.
    Refreshed every cfg.monitor_interval, and at once when the broker publishes a job event."""
    import zmq

    from luzia import protocol
    sub = ctl.ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE + 64)
    sub.setsockopt(zmq.SUBSCRIBE, b"job.")
    from luzia.keys import secure_client
    secure_client(sub, ctl.cfg, ctl.cfg.endpoints.events)
    sub.connect(ctl.cfg.endpoints.events)
    interval = max(0.05, ctl.cfg.monitor_interval)

    def wait_event() -> None:
        """Sleep until the next refresh or a job event, whichever comes first."""
        if sub.poll(interval * 1000):
            while sub.poll(0):
                try:   # the event only wakes us; jobs.get/jobs.list say what changed
                    protocol.decode_event(sub.recv_multipart())
                except ProtocolError:
                    pass

    try:
        view = fetch()
        if render.fancy() and not as_json:
            from rich.live import Live
            show = render.rich_table if isinstance(view, list) else render.rich_job
            with Live(show(view), auto_refresh=False) as live:
                while not _ended(view):
                    wait_event()
                    view = fetch()
                    live.update(show(view), refresh=True)
            return
        seen: dict[str, str] = {}
        while True:
            for job in view if isinstance(view, list) else [view]:
                key = json.dumps(job, sort_keys=True, default=_bytes) if as_json \
                    else render.status_line(job)
                if seen.get(job["id"]) != key:
                    seen[job["id"]] = key
                    click.echo(json.dumps(job, default=_bytes) if as_json
                               else render.change_line(job))
            if _ended(view):
                break
            wait_event()
            view = fetch()
        if not as_json:
            click.echo("")
            if isinstance(view, list):
                render.jobs_table(view)
            else:
                render.job_detail(view)
    finally:
        sub.close(0)


@cli.command()
@click.argument("job_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the job ended.")
@click.option("--json", "as_json", is_flag=True,
              help="JSON: {id, state, size, source, output} of what is there now (not with -f).")
def logs(job_id, follow, as_json) -> None:
    """Print a job's output (read from its agent through the broker).

    Raw to a terminal; with escape sequences and control characters stripped when piped.
    When the job's agent cannot be reached, the last lines the broker keeps are shown."""
    if follow and as_json:
        raise click.UsageError("--json and --follow do not go together")
    ctl = _control()
    try:
        job_id = _get(ctl, job_id)["id"]
        if as_json:
            _dump(_read_all(ctl, job_id))
            return
        sink = render.LogSink()
        try:
            offset, shown_tail = 0, False
            while True:
                data, res = _read(ctl, job_id, offset)
                if res["source"] == "agent":
                    sink.write(data)
                    offset = res["offset"] + len(data)
                    if data and offset < res["size"]:
                        continue            # more is there already: no pause
                elif data and not shown_tail:
                    sink.write(data)        # only the broker's tail: the agent is not reachable
                    shown_tail = True
                if not follow or res["state"] not in LIVE:
                    break
                time.sleep(LOG_POLL)  # polling interval of -f
        finally:
            sink.close()
    finally:
        ctl.close()


def _read(ctl, job_id: str, offset: int) -> tuple[bytes, dict[str, Any]]:
    """One logs.read, its fields checked (they came over the network)."""
    res = ctl.call("logs.read", id=job_id, offset=offset, limit=LOG_CHUNK)
    if not isinstance(res, dict):
        raise ProtocolError("the broker sent a malformed logs.read result")
    data = res.get("data") or b""
    fields = {"offset": res.get("offset", offset), "size": res.get("size", 0)}
    if not isinstance(data, bytes) or not all(isinstance(v, int) and v >= 0 for v in fields.values()):
        raise ProtocolError("the broker sent a malformed logs.read result")
    return data, {**fields, "state": str(res.get("state")),
                  "source": "agent" if res.get("source") == "agent" else "broker"}


def _read_all(ctl, job_id: str) -> dict[str, Any]:
    chunks, offset = [], 0
    while True:
        data, res = _read(ctl, job_id, offset)
        chunks.append(data)
        offset = res["offset"] + len(data)
        if res["source"] != "agent" or not data or offset >= res["size"]:
            break
    from luzia.text import strip_terminal
    return {"id": job_id, "state": res["state"], "size": res["size"], "source": res["source"],
            "output": strip_terminal(b"".join(chunks).decode(errors="replace"))}


@cli.command()
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="JSON: a list of {id, state, result}.")
def cancel(job_ids, as_json) -> None:
    """Cancel jobs: pending ones at once, running ones through their agent.

    One line per job: killed, cancelling (its agent is stopping it) or already <state>.
    An unknown id cancels none of them (exit 2)."""
    with _control() as ctl:
        results = ctl.call("jobs.cancel", ids=list(job_ids))
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise ProtocolError("the broker answered jobs.cancel with something that is not a list")
    if as_json:
        _dump(results)
        return
    for res in results:
        click.echo(f"{render.clean(res.get('id'))}: {render.clean(res.get('result'))}")


@cli.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True,
              help="JSON: {id, state, host, here, command} instead of attaching.")
def attach(job_id, as_json) -> None:
    """Attach to a running job's tmux session (Ctrl-b d detaches).

    On another host, says which host and the command to run there; for a finished job,
    points at `luzia logs`."""
    from luzia.ids import JOB_ID_RE
    with _control() as ctl:
        job = _get(ctl, job_id)
    cfg = ctl.cfg
    job_id = job["id"]
    if not JOB_ID_RE.match(job_id):       # it becomes an argument of tmux below
        raise ProtocolError("the broker sent a malformed job id")
    state, host = render.clean(job.get("state")), render.clean(job.get("host"), 255)
    session = _session_of(cfg, job_id)
    argv = ["tmux", "-L", cfg.agent.tmux_socket, "attach", "-t", session]
    here = host == cfg.agent.name
    if as_json:
        _dump({"id": job_id, "state": state, "host": host, "here": here, "command": argv})
        return
    command = " ".join(argv)
    if state in render.TERMINAL:
        click.echo(f"job {job_id} is {state}; its output: luzia logs {job_id}")
        return
    if state == "pending" or not host:
        click.echo(f"job {job_id} has not started yet ({render.clean(job.get('why'), 200) or state})")
        return
    if not here:
        click.echo(f"job {job_id} runs on {host}; attach there with: ssh -t {host} {command}")
        return
    tmux = shutil.which("tmux")
    if not tmux:
        raise LuziaError(f"tmux is not installed here; follow the output with: luzia logs -f {job_id}")
    import subprocess
    found = subprocess.run([tmux, "-L", cfg.agent.tmux_socket, "has-session", "-t", session],
                           capture_output=True)
    if found.returncode != 0:
        raise LuziaError(f"job {job_id} has no tmux session here (its agent runs it without "
                         f"tmux?); follow the output with: luzia logs -f {job_id}")
    os.execv(tmux, [tmux, *argv[1:]])


def _session_of(cfg, job_id: str) -> str:
    """The session this host's agent recorded for the job (the interactive runner's slot
    session), else the tmux runner's `luzia-<id>`."""
    try:
        session = json.loads((Path(cfg.jobs_dir) / job_id / layout.STATUS).read_text())["session"]
    except (OSError, ValueError, KeyError, TypeError):
        session = None
    if isinstance(session, str) and layout.SESSION_RE.fullmatch(session):
        return session
    return layout.job_session(job_id)


@cli.group()
def config() -> None:
    """The effective configuration."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="JSON, with `source` and `candidates`.")
def config_show(as_json) -> None:
    """Print the effective config (file < LUZIA_* env vars) and where it was read from."""
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
    """`data` as TOML text (scalars and lists as JSON values, which TOML reads the same)."""
    scalars, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            tables.append((_key(key), value))
        else:
            scalars.append(f"{_key(key)} = {json.dumps(value)}")
    out = "\n".join(scalars)
    for key, value in tables:
        name = f"{prefix}{key}"
        body = _toml(value, f"{name}.")
        out += f"\n\n[{name}]\n{body}" if body else f"\n\n[{name}]"
    return out.strip()


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


try:
    from luzia.cli.supervisor_cmds import supervisor
    cli.add_command(supervisor)
except ImportError:  # pragma: no cover - written separately; the rest works without it
    pass

from luzia.cli.git_cmds import diff, revert  # noqa: E402  (they use the helpers above)

cli.add_command(diff)
cli.add_command(revert)
from luzia.cli.keys_cmds import keys  # noqa: E402 (registered after the group exists)

cli.add_command(keys)
from luzia.cli.retry_cmds import retry  # noqa: E402

cli.add_command(retry)


from luzia.cli import import_cmds, notify, ops_cmds, top  # noqa: E402  (operator commands; they use the helpers above)

for _command in (*ops_cmds.COMMANDS, top.top, import_cmds.import_group, *notify.COMMANDS):
    cli.add_command(_command)


def run_app(args: list[str]) -> int:
    """Run a click command; every LuziaError becomes `luzia: <message>` and its exit code."""
    try:
        code = cli.main(args=args, prog_name="luzia", standalone_mode=False)
    except click.exceptions.Abort:
        return 130
    except click.UsageError as exc:   # one line, saying where the help is
        where = exc.ctx.command_path if exc.ctx is not None else "luzia"
        click.echo(f"luzia: {exc.format_message()} (see `{where} --help`)", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except LuziaError as exc:
        click.echo(f"luzia: {render.clean(exc)}", err=True)    # may hold the broker's words
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return code if isinstance(code, int) else 0
