"""`luzia-supervisor`: start and keep this host's broker and/or agent running.

systemd starts it at boot (deploy/luzia-supervisor.service); `make run` runs it in the
foreground. SIGTERM or Ctrl-C stops every child gracefully; a second Ctrl-C kills them.
Talk to it with `luzia supervisor status|start|stop|restart|tail`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import logging.handlers
import os
import sys

from luzia import config
from luzia.errors import LuziaError

log = logging.getLogger("luzia.supervisor")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="luzia-supervisor", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="PATH",
                   help="config file (sets LUZIA_CONFIG for the children too)")
    p.add_argument("--no-broker", action="store_true", help="do not run a broker here")
    p.add_argument("--no-agent", action="store_true", help="do not run an agent here")
    p.add_argument("--web", action=argparse.BooleanOptionalAction, default=None,
                   help="run the dashboard, luzia-web (default: web.enabled)")
    echo = p.add_mutually_exclusive_group()
    echo.add_argument("--quiet", action="store_true",
                      help="do not echo the children's output (it still goes to their logs)")
    echo.add_argument("--echo", action="store_true",
                      help="echo the children's output even when stdout is not a terminal")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s supervisor %(levelname)s %(message)s", stream=sys.stderr)
    if args.config:
        if not os.path.isfile(args.config):
            print(f"luzia-supervisor: no config file at {args.config}", file=sys.stderr)
            return 2
        os.environ["LUZIA_CONFIG"] = os.path.abspath(args.config)  # the children read it too
    try:
        cfg = config.load()
        cfg = dataclasses.replace(cfg, supervisor=dataclasses.replace(
            cfg.supervisor, broker=cfg.supervisor.broker and not args.no_broker,
            agent=cfg.supervisor.agent and not args.no_agent))
        if args.web is not None:
            cfg = dataclasses.replace(cfg, web=dataclasses.replace(cfg.web, enabled=args.web))
        from luzia.supervisor.arbiter import Arbiter
        echo = args.echo or (not args.quiet and sys.stdout.isatty())
        arbiter = Arbiter(cfg, echo=echo)
    except LuziaError as exc:
        print(f"luzia-supervisor: {exc}", file=sys.stderr)
        return exc.exit_code
    own_log(cfg)
    print("\n".join(banner(cfg, list(arbiter.children))), flush=True)
    log.info("running %s; state %s; config %s; logs %s; control %s", ", ".join(arbiter.children)
             or "nothing", cfg.home, cfg.source or "none", cfg.log_dir, cfg.endpoints.supervisor)
    arbiter.handle_signals()
    arbiter.run()
    print("luzia-supervisor: stopped", flush=True)
    log.info("stopped")
    return 0


def own_log(cfg: config.Config) -> None:
    """The supervisor's own log lines also go to <log dir>/supervisor.log, rotated."""
    try:
        handler = logging.handlers.RotatingFileHandler(
            cfg.log_dir / "supervisor.log", maxBytes=cfg.supervisor.log_max_bytes,
            backupCount=cfg.supervisor.log_backups)
    except OSError as exc:
        log.warning("no supervisor.log: %s", exc)
        return
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.getLogger().addHandler(handler)


def banner(cfg: config.Config, children: list[str]) -> list[str]:
    """What an operator needs to find things: state, config, endpoints, logs, a first job."""
    candidates = ", ".join(str(c) for c in config.config_candidates())
    ep = cfg.endpoints
    lines = [
        f"luzia-supervisor (pid {os.getpid()}): running {', '.join(children) or 'nothing'}",
        f"  state      {cfg.home}",
        f"  config     {cfg.source or 'none: built-in defaults'}  (candidates: {candidates or '-'})",
        f"  endpoints  submit {ep.submit}",
        f"             agents {ep.agents}",
        f"             control {ep.control}",
        f"             events {ep.events}",
        f"             supervisor {ep.supervisor}",
        f"  logs       {cfg.log_dir}",
    ]
    if "web" in children:
        lines.append(f"  dashboard  {dashboard_url(cfg)}")
    if "demo" in cfg.projects:
        lines.append('  submit a job: luzia demo "hello"')
    lines.append("  stop: Ctrl-C or SIGTERM (a second Ctrl-C kills)")
    return lines


def dashboard_url(cfg: config.Config) -> str:
    """The dashboard's sign-in URL with the operator's token (made now if there is none)."""
    from luzia.web import tokens
    try:
        token = tokens.Tokens(cfg).ensure(tokens.operator())
    except LuziaError as exc:
        return f"(no token: {exc})"
    if not cfg.web.port and not cfg.web.url:
        return "any free port: `luzia web url` prints its address once it listens"
    return tokens.login_url(cfg, token)


if __name__ == "__main__":
    sys.exit(main())
