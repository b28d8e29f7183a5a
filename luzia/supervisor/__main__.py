"""`luzia-supervisor`: start and keep this host's broker and/or agent running.

systemd starts it at boot (deploy/luzia-supervisor.service); `make run` runs it in the
foreground. Ctrl-C (or SIGTERM) stops every child; a second Ctrl-C kills them.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys

from luzia import config
from luzia.errors import LuziaError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="luzia-supervisor", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="config file (sets LUZIA_CONFIG for the children too)")
    p.add_argument("--no-broker", action="store_true", help="do not run a broker here")
    p.add_argument("--no-agent", action="store_true", help="do not run an agent here")
    p.add_argument("--quiet", action="store_true", help="do not echo the children's output")
    p.add_argument("--echo", action="store_true", help="echo the children's output even without a TTY")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s supervisor %(levelname)s %(message)s", stream=sys.stderr)
    if args.config:
        os.environ["LUZIA_CONFIG"] = os.path.abspath(args.config)
    try:
        cfg = config.load()
        if args.no_broker or args.no_agent:
            cfg = dataclasses.replace(cfg, supervisor=dataclasses.replace(
                cfg.supervisor, broker=cfg.supervisor.broker and not args.no_broker,
                agent=cfg.supervisor.agent and not args.no_agent))
        from luzia.supervisor.arbiter import Arbiter
        echo = (sys.stdout.isatty() or args.echo) and not args.quiet
        arbiter = Arbiter(cfg, echo=echo)
    except LuziaError as exc:
        print(f"luzia-supervisor: {exc}", file=sys.stderr)
        return exc.exit_code
    banner(cfg, list(arbiter.children))
    signal.signal(signal.SIGTERM, lambda *_: arbiter.shutdown())
    signal.signal(signal.SIGINT, lambda *_: arbiter.shutdown())
    arbiter.run()
    print("luzia-supervisor: stopped", flush=True)
    return 0


def banner(cfg: config.Config, children: list[str]) -> None:
    lines = [
        f"luzia-supervisor {os.getpid()}: running {', '.join(children) or 'nothing'}",
        f"  state   {cfg.home}",
        f"  config  {cfg.source or 'none: built-in defaults'} "
        f"(looked for {', '.join(str(c) for c in config.config_candidates())})",
        f"  logs    {cfg.log_dir}",
        f"  broker  {cfg.endpoints.control}",
    ]
    if "demo" in cfg.projects:
        lines.append('  submit a job from another shell:  .venv/bin/luzia demo "hello"')
    lines.append("  Ctrl-C stops everything")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
