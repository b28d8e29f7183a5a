"""`luzia jobs`, `cancel`, `retry` and `attach`: the jobs, one job in detail or followed
live, and what an operator does to them. The views are job_views.py's. Broker ops:
jobs.list, jobs.get, jobs.cancel, jobs.retry (docs/PROTOCOL.md).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from luzia import layout
from luzia.cli.control import (
    call,
    checked_job,
    checked_jobs,
    checked_results,
    connect,
    dump,
    fetch_job,
    json_bytes,
    spooled_job,
)
from luzia.cli.job_views import change_line, rich_job, rich_table, show, status_line
from luzia.cli.render import TERMINAL, clean, fancy
from luzia.errors import BrokerUnreachable, LuziaError, ProtocolError
from luzia.states import JOB_STATE_NAMES

JOBS_HELP = """List recent jobs, or show one job in detail.

JOB_ID may be a unique prefix (6+ characters). --watch follows the view live until the
job (or every listed job) has ended, then prints the final view; it exits 0 whatever the
job's end state (completed, failed, killed, rejected): the state is shown. With the broker
down, a job still in this host's spool is shown from there as `spooled` (not yet
delivered); --watch then waits for the broker. Answers may come from the cache of the
last one (LUZIA_CACHE_TTL, 1 s; 0 turns it off)."""

DRY_RUN_HELP = "Only say what would happen; change nothing."


class NotRetried(LuziaError):
    """Some of the named jobs were not retried (completed, still running, ...)."""

    exit_code = 1


@click.command(help=JOBS_HELP)
@click.argument("job_id", required=False)
@click.option("--watch", "-w", is_flag=True, help="Follow live until the job(s) ended.")
@click.option("--json", "as_json", is_flag=True,
              help="JSON: one object for a job, a list for many (with --watch: a line per change).")
@click.option("--limit", "-n", default=20, show_default=True, envvar="LUZIA_JOBS_LIMIT", show_envvar=True,
              type=click.IntRange(1, 10_000), help="How many recent jobs.")
@click.option("--state", "-s", multiple=True, envvar="LUZIA_JOBS_STATE", show_envvar=True,
              type=click.Choice(JOB_STATE_NAMES),
              help="Only jobs in this state (repeatable).")
@click.option("--project", "-p", envvar="LUZIA_JOBS_PROJECT", show_envvar=True,
              help="Only this project's jobs.")
@click.option("--user", "-u", envvar="LUZIA_JOBS_USER", show_envvar=True, help="Only this user's jobs.")
def jobs(job_id, watch, as_json, limit, state, project, user) -> None:
    ctl = connect()
    try:
        if job_id is None:
            filters = {"limit": limit, "state": list(state), "project": project, "user": user}
            filters = {k: v for k, v in filters.items() if v}
            first = None

            def fetch() -> Any:
                return checked_jobs(call(ctl, "jobs.list", **filters), "jobs.list")
        else:
            first = _first(ctl, job_id, watch, as_json)
            if first is None:
                return

            def fetch() -> Any:
                return checked_job(call(ctl, "jobs.get", id=first["id"]), "jobs.get")
        if watch:
            watch_view(ctl, fetch, as_json)
            return
        found = first if first is not None else fetch()
        if as_json:
            dump(found)
        else:
            show(found)
    finally:
        ctl.close()


def _first(ctl: Any, job_id: str, watch: bool, as_json: bool) -> dict[str, Any] | None:
    """The job from the broker; with the broker down, from the spool (shown here: None is
    returned, unless --watch waits for the broker to take it)."""
    try:
        return fetch_job(ctl, job_id)
    except BrokerUnreachable as exc:
        spooled = spooled_job(ctl.cfg, job_id, clean(exc, 300))
        if spooled is None:
            raise
    dump(spooled) if as_json else show(spooled)
    if not watch:
        return None
    interval = max(0.1, ctl.cfg.monitor_interval)
    while True:                 # --watch: until the broker is back and has the job
        time.sleep(interval)    # polling step: nothing announces a broker coming back
        try:
            return fetch_job(ctl, spooled["id"])
        except BrokerUnreachable:
            continue


@click.command()
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--dry-run", "-n", is_flag=True, help=DRY_RUN_HELP)
@click.option("--json", "as_json", is_flag=True, help="JSON: a list of {id, state, result}.")
def cancel(job_ids, dry_run, as_json) -> None:
    """Cancel jobs: pending ones at once, running ones through their agent.

    One line per job: killed, cancelling (its agent is stopping it) or already <state>;
    with --dry-run what would happen (would kill, would cancel). An unknown id cancels
    none of them (exit 2)."""
    _each("jobs.cancel", job_ids, dry_run, as_json)


@click.command()
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--dry-run", "-n", is_flag=True, help=DRY_RUN_HELP)
@click.option("--json", "as_json", is_flag=True, help="JSON: a list of {id, state, result}.")
@click.option("--fresh", is_flag=True,
              help="Start the agent's conversation afresh instead of resuming it.")
def retry(job_ids, dry_run, as_json, fresh) -> None:
    """Run failed, killed, lost or paused jobs again: same id, next attempt, back in the
    queue (a paused job without waiting for its reset). A job whose agent reported a
    session resumes that conversation unless --fresh (docs/AGENTS.md).

    One line per job: retrying (with --dry-run: would retry as attempt N), or not retried
    and why (a completed job is not run again: submit its task anew; a pending or running
    one is left alone). Exit 1 if any job was not retried; an unknown id retries none of
    them (exit 2)."""
    results = _each("jobs.retry", job_ids, dry_run, as_json, fresh=fresh or None)
    refused = [r for r in results if str(r.get("result")).startswith("not retried")]
    if refused:
        raise NotRetried(f"{len(refused)} of {len(results)} jobs not retried")


def _each(op: str, job_ids: tuple[str, ...], dry_run: bool, as_json: bool,
          **args: Any) -> list[dict[str, Any]]:
    """One request for all the named jobs, then a line (or an object) per job."""
    with connect() as ctl:
        results = checked_results(call(ctl, op, ids=list(job_ids), dry_run=dry_run or None,
                                       **args), op)
    if as_json:
        dump(results)
    else:
        for res in results:
            click.echo(f"{clean(res.get('id'))}: {clean(res.get('result'))}")
        if dry_run:
            click.echo("(dry run: nothing was changed)")
    return results


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True,
              help="JSON: {id, state, host, here, session, command, there} instead of attaching.")
def attach(job_id, as_json) -> None:
    """Attach to a running job's tmux session (Ctrl-b d detaches).

    The session is the one its agent named to the broker (a tmux runner's `luzia-<id>`,
    an interactive runner's slot); on this host through `agent.tmux_prefix` (e.g. into a
    container). On another host, says which host and the command to run there; for a
    finished job, points at `luzia logs`."""
    from luzia.ids import JOB_ID_RE
    with connect() as ctl:
        job = fetch_job(ctl, job_id)
    cfg = ctl.cfg
    job_id = job["id"]
    if not JOB_ID_RE.fullmatch(job_id):       # it becomes an argument of tmux below
        raise ProtocolError("the broker sent a malformed job id")
    state, host = clean(job.get("state")), clean(job.get("host"), 255)
    here = host == cfg.agent.name
    session = _session_of(cfg, job)
    argv = tmux_argv(cfg, "attach", "-t", session, tty=True)
    there = ["ssh", "-t", host, "luzia", "attach", job_id]
    if as_json:
        dump({"id": job_id, "state": state, "host": host, "here": here, "session": session,
              "command": argv, "there": there})
        return
    if state in TERMINAL:
        click.echo(f"job {job_id} is {state}; its output: luzia logs {job_id}")
    elif state == "pending" or not host:
        click.echo(f"job {job_id} has not started yet ({clean(job.get('why'), 200) or state})")
    elif not here:
        click.echo(f"job {job_id} runs on {host} in tmux session {session}; attach there "
                   f"with: {' '.join(there)}")
    else:
        _exec_tmux(cfg, job_id, session, argv)


def tmux_argv(cfg: Any, *args: str, tty: bool = False) -> list[str]:
    """A tmux command on the agents' tmux server, through this host's prefix (a container's
    `docker exec -i box`: with `tty`, a terminal is asked for, as attaching needs one)."""
    prefix = cfg.tmux_prefix
    if tty:
        prefix = with_tty(prefix)
    return [*prefix, "tmux", "-L", cfg.agent.tmux_socket, *args]


def with_tty(prefix: list[str]) -> list[str]:
    """`prefix` asking for a terminal: `-t` after `docker|podman|nerdctl|kubectl exec` or
    after `ssh`, unless one is there; any other prefix as it is."""
    if not prefix:
        return prefix
    program = os.path.basename(prefix[0])
    has_tty = any(a in ("-t", "--tty", "-it", "-ti") or (a.startswith("-") and not a.startswith("--")
                                                         and "t" in a) for a in prefix[1:])
    if program == "ssh" and not has_tty:
        return [prefix[0], "-t", *prefix[1:]]
    if program in ("docker", "podman", "nerdctl", "kubectl") and "exec" in prefix and not has_tty:
        at = prefix.index("exec") + 1
        return [*prefix[:at], "-t", *prefix[at:]]
    return prefix


def _exec_tmux(cfg: Any, job_id: str, session: str, argv: list[str]) -> None:
    """Become `tmux attach` on the job's session, if this host's tmux has it."""
    program = shutil.which(argv[0])
    if not program:
        raise LuziaError(f"{argv[0]} is not installed here; follow the output with: "
                         f"luzia logs -f {job_id}")
    import subprocess
    found = subprocess.run(tmux_argv(cfg, "has-session", "-t", f"={session}"), capture_output=True)
    if found.returncode != 0:
        raise LuziaError(f"job {job_id} has no tmux session {session} here (its agent runs it "
                         f"without tmux?); follow the output with: luzia logs -f {job_id}")
    os.execv(program, [program, *argv[1:]])


def _session_of(cfg: Any, job: dict[str, Any]) -> str:
    """The session its agent named to the broker; else (an older broker) the one this
    host's agent recorded in the job's status; else the tmux runner's `luzia-<id>`."""
    candidates = [job.get("session")]
    from luzia.jobstatus import attempt_record  # present only where its agent ran it
    candidates.append(attempt_record(Path(cfg.jobs_dir) / job["id"])[0].get("session"))
    for session in candidates:
        if layout.is_session(session):
            return session
    return layout.job_session(job["id"])


# ---------------------------------------------------------------------------
# following a view live (--watch)


def _ended(view: Any) -> bool:
    return all(j.get("state") in TERMINAL for j in (view if isinstance(view, list) else [view]))


def watch_view(ctl: Any, fetch: Callable[[], Any], as_json: bool) -> None:
    """Follow a view until it has ended: a rich Live on a terminal, else a line per change.
    Refreshed every cfg.monitor_interval, and at once when the broker publishes a job event."""
    from luzia.jobevents import Events
    interval = max(0.05, ctl.cfg.monitor_interval)
    with Events(ctl) as events:
        def wait_event() -> None:
            events.wait(interval)
        if fancy() and not as_json:
            _watch_live(fetch, wait_event)
        else:
            _watch_lines(fetch, wait_event, as_json)


def _watch_live(fetch: Callable[[], Any], wait_event: Callable[[], None]) -> None:
    from rich.live import Live
    view = fetch()
    look = rich_table if isinstance(view, list) else rich_job
    with Live(look(view), auto_refresh=False) as live:
        while not _ended(view):
            wait_event()
            view = fetch()
            live.update(look(view), refresh=True)


def _watch_lines(fetch: Callable[[], Any], wait_event: Callable[[], None], as_json: bool) -> None:
    """A line per change of any job in the view (JSON lines with --json), then the final view."""
    view = fetch()
    seen: dict[str, str] = {}
    while True:
        for job in view if isinstance(view, list) else [view]:
            key = json.dumps(job, sort_keys=True, default=json_bytes) if as_json else status_line(job)
            if seen.get(job["id"]) != key:
                seen[job["id"]] = key
                click.echo(json.dumps(job, default=json_bytes) if as_json else change_line(job))
        if _ended(view):
            break
        wait_event()
        view = fetch()
    if not as_json:
        click.echo("")
        show(view)


COMMANDS = (jobs, cancel, retry, attach)
