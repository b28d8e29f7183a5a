"""`luzia jobs`, `cancel`, `retry` and `attach`: the jobs, one job in detail or followed
live, and what an operator does to them; with the job views (the list, the detail, the
line per change). Broker ops: jobs.list, jobs.get, jobs.cancel, jobs.retry (docs/PROTOCOL.md).
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
from luzia.cli.budget import attempt_cost, cost_cell, usage_lines
from luzia.cli.control import checked_job, checked_jobs, checked_results, connect, dump, fetch_job, json_bytes
from luzia.cli.render import STATE_STYLE, TERMINAL, age, bar, clean, fancy, num, stamp
from luzia.errors import LuziaError, ProtocolError
from luzia.states import JOB_STATE_NAMES

TABLE_HEAD = ("ID", "STATE", "PROJECT", "USER", "PRIO", "AGE", "PROGRESS", "COST", "HOST", "NOTE")

JOBS_HELP = """List recent jobs, or show one job in detail.

JOB_ID may be a unique prefix (6+ characters). --watch follows the view live until the
job (or every listed job) has ended, then prints the final view; it exits 0 whatever the
job's end state (completed, failed, killed, rejected): the state is shown."""


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
                return checked_jobs(ctl.call("jobs.list", **filters), "jobs.list")
        else:
            first = fetch_job(ctl, job_id)

            def fetch() -> Any:
                return checked_job(ctl.call("jobs.get", id=first["id"]), "jobs.get")
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


@click.command()
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="JSON: a list of {id, state, result}.")
def cancel(job_ids, as_json) -> None:
    """Cancel jobs: pending ones at once, running ones through their agent.

    One line per job: killed, cancelling (its agent is stopping it) or already <state>.
    An unknown id cancels none of them (exit 2)."""
    _each("jobs.cancel", job_ids, as_json)


@click.command()
@click.argument("job_ids", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="JSON: a list of {id, state, result}.")
@click.option("--fresh", is_flag=True,
              help="Start the agent's conversation afresh instead of resuming it.")
def retry(job_ids, as_json, fresh) -> None:
    """Run failed, killed, lost or paused jobs again: same id, next attempt, back in the
    queue (a paused job without waiting for its reset). A job whose agent reported a
    session resumes that conversation unless --fresh (docs/AGENTS.md).

    One line per job: retrying, or not retried and why (a completed job is not run
    again: submit its task anew; a pending or running one is left alone). Exit 1 if any
    job was not retried; an unknown id retries none of them (exit 2)."""
    results = _each("jobs.retry", job_ids, as_json, **({"fresh": True} if fresh else {}))
    refused = [r for r in results if r.get("result") != "retrying"]
    if refused:
        raise NotRetried(f"{len(refused)} of {len(results)} jobs not retried")


def _each(op: str, job_ids: tuple[str, ...], as_json: bool, **args: Any) -> list[dict[str, Any]]:
    """One request for all the named jobs, then a line (or an object) per job."""
    with connect() as ctl:
        results = checked_results(ctl.call(op, ids=list(job_ids), **args), op)
    if as_json:
        dump(results)
    else:
        for res in results:
            click.echo(f"{clean(res.get('id'))}: {clean(res.get('result'))}")
    return results


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True,
              help="JSON: {id, state, host, here, command} instead of attaching.")
def attach(job_id, as_json) -> None:
    """Attach to a running job's tmux session (Ctrl-b d detaches).

    On another host, says which host and the command to run there; for a finished job,
    points at `luzia logs`."""
    from luzia.ids import JOB_ID_RE
    with connect() as ctl:
        job = fetch_job(ctl, job_id)
    cfg = ctl.cfg
    job_id = job["id"]
    if not JOB_ID_RE.match(job_id):       # it becomes an argument of tmux below
        raise ProtocolError("the broker sent a malformed job id")
    state, host = clean(job.get("state")), clean(job.get("host"), 255)
    session = _session_of(cfg, job_id)
    argv = ["tmux", "-L", cfg.agent.tmux_socket, "attach", "-t", session]
    here = host == cfg.agent.name
    if as_json:
        dump({"id": job_id, "state": state, "host": host, "here": here, "command": argv})
        return
    command = " ".join(argv)
    if state in TERMINAL:
        click.echo(f"job {job_id} is {state}; its output: luzia logs {job_id}")
    elif state == "pending" or not host:
        click.echo(f"job {job_id} has not started yet ({clean(job.get('why'), 200) or state})")
    elif not here:
        click.echo(f"job {job_id} runs on {host}; attach there with: ssh -t {host} {command}")
    else:
        _exec_tmux(cfg, job_id, session, argv)


def _exec_tmux(cfg: Any, job_id: str, session: str, argv: list[str]) -> None:
    """Become `tmux attach` on the job's session, if this host's tmux has it."""
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


def _session_of(cfg: Any, job_id: str) -> str:
    """The session this host's agent recorded for the job (the interactive runner's slot
    session), else the tmux runner's `luzia-<id>`."""
    try:
        session = json.loads((Path(cfg.jobs_dir) / job_id / layout.STATUS).read_text())["session"]
    except (OSError, ValueError, KeyError, TypeError):
        session = None
    if isinstance(session, str) and layout.SESSION_RE.fullmatch(session):
        return session
    return layout.job_session(job_id)


# ---------------------------------------------------------------------------
# following a view live (--watch)


def _ended(view: Any) -> bool:
    return all(j.get("state") in TERMINAL for j in (view if isinstance(view, list) else [view]))


def _events(ctl: Any) -> Any:
    """A SUB socket on the broker's job events."""
    import zmq

    from luzia import protocol
    from luzia.keys import secure_client
    sub = ctl.ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE + 64)
    sub.setsockopt(zmq.SUBSCRIBE, b"job.")
    secure_client(sub, ctl.cfg, ctl.cfg.endpoints.events)
    sub.connect(ctl.cfg.endpoints.events)
    return sub


def watch_view(ctl: Any, fetch: Callable[[], Any], as_json: bool) -> None:
    """Follow a view until it has ended: a rich Live on a terminal, else a line per change.
    Refreshed every cfg.monitor_interval, and at once when the broker publishes a job event."""
    from luzia import protocol
    sub = _events(ctl)
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
        if fancy() and not as_json:
            _watch_live(fetch, wait_event)
        else:
            _watch_lines(fetch, wait_event, as_json)
    finally:
        sub.close(0)


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


# ---------------------------------------------------------------------------
# the views


def show(view: Any) -> None:
    """A list of jobs as the table, one job in detail."""
    if isinstance(view, list):
        jobs_table(view)
    else:
        job_detail(view)


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
    rows: list[tuple[str, ...]] = []
    for j in jobs:
        submitted = num(j.get("submitted_at"))
        rows.append((clean(j.get("id"), 24), state_cell(j, now), clean(j.get("project"), 24),
                     clean(j.get("user"), 16), clean(j.get("priority"), 10),
                     age(now - submitted) if submitted is not None else "-",
                     bar(j.get("progress"), 10), cost_cell(j), clean(j.get("host"), 20) or "-",
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
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
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
    ]
    return (lines + _time_lines(job, now) + _note_lines(job, now) + usage_lines(job, now)
            + _more_lines(job))


def _time_lines(job: dict[str, Any], now: float) -> list[str]:
    """When it was submitted, started and finished, and how long it waited and ran."""
    submitted = num(job.get("submitted_at")) or now
    started, finished = num(job.get("started_at")), num(job.get("finished_at"))
    waited = (started or finished or now) - submitted
    ran = ((finished or now) - started) if started else None
    lines = [f"submitted  {stamp(submitted)}   waited {age(waited)}"]
    if started:
        lines.append(f"started    {stamp(started)}   " + (f"ran {age(ran)}" if finished
                                                            else f"running for {age(ran)}"))
    if finished:
        code = job.get("exit_code")
        lines.append(f"finished   {stamp(finished)}   exit code "
                     f"{'-' if code is None else clean(code)}")
    return lines


def _note_lines(job: dict[str, Any], now: float) -> list[str]:
    """Its message, why it waits or why it ended, and whether it is stalled."""
    lines = []
    if job.get("message"):
        lines.append(f"message    {clean(job['message'], 200)}")
    if clean(job.get("state")) == "pending" and job.get("why"):
        lines.append(f"why        {clean(job['why'], 200)}")
    elif job.get("reason"):
        lines.append(f"reason     {clean(job['reason'], 200)}")
    if stalled_for(job, now):
        lines.append(f"stalled    no output for {stalled_for(job, now)} (snapshot: "
                     "stall-snapshot.txt in its job directory)")
    return lines


def _more_lines(job: dict[str, Any]) -> list[str]:
    """Its attempts (when more than one) and the last lines of its output."""
    lines = []
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
            f"{stamp(attempt.get('started_at'))}  {ended}{attempt_cost(attempt)}  "
            f"{clean(attempt.get('reason'), 80)}").rstrip()


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


COMMANDS = (jobs, cancel, retry, attach)
