"""`luzia reply ID TEXT`: answer a job that waits for a person by typing into its pane.

The text goes to the job's tmux session (the tmux runner's `luzia-<id>`, the interactive
runner's slot) literally, as `tmux send-keys -l` types it (several lines are pasted), then,
after `interactive.send_delay`, Enter: the way a task is typed into a REPL (tmuxctl.py).
Then the session's `@luzia-answered` option is set, so the agent drops the job's `needs
input` flag at its next look even when the screen does not change (attention.py).

Like `luzia attach`, it reaches the agents' tmux server of this host (through
`agent.tmux_prefix`); a job on another host is answered there (the line says how). Only a
running job in tmux can be answered, and only by its user, its submitter or an admin
(`admins`, `web.admins`, the owner of the state directory, root): the rule the dashboard's
buttons follow. That rule is the CLI's courtesy; what guards a pane is its tmux server's
socket, which only the agent's user (and root) can reach. Broker op: jobs.get.
"""

from __future__ import annotations

import os
import shlex
import time
from typing import Any

import click

from luzia import layout
from luzia.cli.control import checked_job, connect
from luzia.cli.render import TERMINAL, clean
from luzia.config import Config, _login_name
from luzia.errors import LuziaError, ProtocolError, Refused, UsageError


@click.command()
@click.argument("job_id")
@click.argument("text")
@click.option("--no-enter", is_flag=True, help="Type the text only, without Enter after it.")
@click.option("--dry-run", "-n", is_flag=True, help="Only say what would be typed, and where.")
def reply(job_id, text, no_enter, dry_run) -> None:
    """Answer a job that needs input: type TEXT into its tmux pane, then Enter.

    TEXT is typed as it is (`C-c` is three characters, not Ctrl-C); "" presses Enter
    alone (a prompt's default). `luzia jobs` shows `running (needs input)` for a job
    whose pane asks something, `luzia jobs ID` what it shows. Refused, with the reason,
    for a job that is not running, runs without tmux, is not yours (its user, submitter
    or an admin may answer), or runs on another host (the line says how to answer there)."""
    if no_enter and not text:
        raise UsageError("nothing to type: give TEXT, or drop --no-enter to press Enter")
    with connect() as ctl:
        job = checked_job(ctl.call("jobs.get", id=job_id), "jobs.get")
    cfg = ctl.cfg
    session = answerable(cfg, job, text)
    what = f"{text!r}" + ("" if no_enter else " and Enter") if text else "Enter"
    where = f"job {job['id']}'s pane (tmux session {session} on {cfg.agent.name})"
    if dry_run:
        click.echo(f"would type {what} into {where}")
        click.echo("(dry run: nothing was typed)")
        return
    type_into(cfg, job["id"], session, text, enter=not no_enter)
    click.echo(f"typed {what} into {where}")


def answerable(cfg: Config, job: dict[str, Any], text: str) -> str:
    """The tmux session to type into, or Refused saying why the job cannot be answered."""
    from luzia.ids import JOB_ID_RE
    job_id = job.get("id")
    if not isinstance(job_id, str) or not JOB_ID_RE.match(job_id):
        raise ProtocolError("the broker sent a malformed job id")
    state, host = clean(job.get("state")), clean(job.get("host"), 255)
    if state != "running":
        hint = f"; its output: luzia logs {job_id}" if state in TERMINAL else ""
        raise Refused(f"job {job_id} is {state}: only a running job can be answered{hint}")
    session = job.get("session")
    if not layout.is_session(session):
        raise Refused(f"job {job_id} runs without tmux (its agent's runner has no pane to type "
                      f"into): it cannot be answered; luzia cancel {job_id} stops it")
    user = _login_name()
    if not may_answer(cfg, user, job):
        raise Refused(f"job {job_id} is {clean(job.get('user'), 64)}'s: only its user, its "
                      f"submitter or an admin (admins in the config) may answer it, not {user}")
    if host != cfg.agent.name:
        there = shlex.join(["ssh", host, "luzia", "reply", job_id, text])
        raise Refused(f"job {job_id} runs on {host} (tmux session {session}); answer it there: "
                      f"{there}")
    return session


def may_answer(cfg: Config, user: str, job: dict[str, Any]) -> bool:
    """The dashboard's rule for a job's buttons (web/auth.py): its user or submitter, or an
    admin: the config's admins, the owner of the state directory (who runs the fleet here),
    root (identity.admins)."""
    from luzia import identity
    try:
        operator = identity.unix_user(os.stat(cfg.home).st_uid)
    except OSError:
        operator = "root"
    admins = identity.admins([*cfg.admins, *cfg.web.admins], operator)
    return user in admins or user in (job.get("user"), job.get("submitter"))


def type_into(cfg: Config, job_id: str, session: str, text: str, enter: bool) -> None:
    """Type `text` (and Enter) into `session`, then mark the session answered."""
    from luzia.agents.tmuxctl import TmuxController, TmuxError
    tmux = TmuxController(cfg.agent.tmux_socket, cfg.tmux_prefix)
    try:
        if session not in (tmux.sessions(layout.SESSION_PREFIX) or ()):
            raise Refused(f"job {job_id} has no tmux session {session} on this host's tmux "
                          f"server ({cfg.agent.tmux_socket}); luzia attach {job_id} says where")
        tmux.send_keys(session, text, enter=enter, delay=cfg.interactive.send_delay)
        tmux.run("set-option", "-t", f"={session}:", layout.ANSWERED_OPTION,
                 f"{job_id} {time.time():.3f}")
    except TmuxError as exc:
        raise LuziaError(f"could not type into job {job_id}'s pane: {exc}") from None


COMMANDS = (reply,)
