"""The root command `luzia`: its options, its help, and every noun's commands registered
on it (luzia/cli/<noun>.py, listed in names.py). Submitting is not here: main.py sends
`luzia PROJECT TASK...` to the lean submit path (submit.py) before click is imported.
"""

from __future__ import annotations

import os

import click

from luzia import __version__
from luzia.cli import (
    agents,
    budget,
    config,
    db,
    git,
    history,
    imports,
    jobs,
    keys,
    logs,
    notify,
    queue,
    reply,
    supervisor,
    top,
    web,
    workspace,
)
from luzia.cli.render import clean
from luzia.errors import LuziaError

HELP = """Dispatch AI-agent tasks to a fleet of GPU hosts.

\b
Submit (returns at once, prints agent:PROJECT:JOB_ID):
  luzia PROJECT TASK... [--priority critical|high|normal|low] [--type T]
        [--user U] [--timeout S] [--max-retries N] [--after ID[,ID]]
        [--metadata JSON] [--base REF | --with-local-changes] [--dry-run] [--json]
  (luzia PROJECT --help for the details)

\b
A project with a git `repo` runs each job in its own worktree, on branch luzia/ID:
  luzia diff ID, luzia merge ID [--squash], luzia discard ID, luzia workspace ID,
  luzia pr ID (docs/WORKSPACES.md)

\b
Operators: luzia queue status|add|flush|locks,
  luzia agents status|allocate|drain|undrain|forget, luzia top, luzia history,
  luzia stats [--by agent], luzia budget, luzia retry [--fresh],
  luzia import pending-requests|beads [--follow], luzia notify status|test
  (every query takes --json, every command that changes something --dry-run;
  no colour without a terminal or with NO_COLOR)

\b
Shell completion (click): add to ~/.bashrc (or zsh/fish likewise)
  eval "$(_LUZIA_COMPLETE=bash_source luzia)"
  zsh: eval "$(_LUZIA_COMPLETE=zsh_source luzia)"
  fish: _LUZIA_COMPLETE=fish_source luzia | source

\b
Exit codes:
  0   ok
  1   error
  2   usage: bad option, unknown project, job not found, --user not yours to name
  3   broker not reachable, or it refused this host's CURVE key
  4   protocol error: a malformed answer, or a CLI older than the broker serves
  73  state dir not writable, or the job database unusable (luzia db check)
  75  submission rejected by the broker (queue full, unknown dependency),
      or luzia db recover while the broker runs
"""

NOUNS = (jobs, logs, queue, agents, history, top, imports, git, workspace, config, keys,
         supervisor, db, web, budget, notify, reply)


@click.group(help=HELP, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="luzia")
@click.option("--config", "config_path", envvar="LUZIA_CONFIG", show_envvar=True, metavar="PATH",
              type=click.Path(dir_okay=False), help="Config file (default: the first of "
              "$XDG_CONFIG_HOME/luzia/luzia.toml, /etc/luzia/luzia.toml).")
@click.option("--control-timeout", envvar="LUZIA_CONTROL_TIMEOUT", show_envvar=True, default=3.0,
              show_default=True, type=click.FloatRange(0.1, 600), metavar="SECONDS",
              help="How long to wait for the broker's answer.")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, control_timeout: float) -> None:
    if config_path:   # config.load reads it from the environment, like every component
        os.environ["LUZIA_CONFIG"] = config_path
    ctx.obj = {"timeout": control_timeout}
    if ctx.invoked_subcommand is None:     # plain `luzia`: the help, and success
        click.echo(ctx.get_help())


def register(group: click.Group, nouns: tuple = NOUNS) -> None:
    """The one way a command joins `luzia`: it is in its noun module's COMMANDS."""
    for noun in nouns:
        for command in noun.COMMANDS:
            group.add_command(command)


register(cli)


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
        click.echo(f"luzia: {clean(exc)}", err=True)    # may hold the broker's words
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return code if isinstance(code, int) else 0
