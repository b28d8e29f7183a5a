"""`luzia-agent`: run this host's agent in the foreground (the supervisor normally starts it)."""

from __future__ import annotations

import argparse
import logging
import sys

from luzia import config
from luzia.service import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="luzia-agent", description=__doc__)
    parser.add_argument("--name", help="agent name (default: the host name)")
    parser.add_argument("--slots", type=int, help="jobs at once (capacity credits)")
    parser.add_argument("--capabilities", help="comma list of task types, e.g. code,text")
    parser.add_argument("--runner", choices=["auto", "tmux", "subprocess", "interactive"])
    parser.add_argument("--connect", metavar="ENDPOINT", help="the broker's agents endpoint")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s agent %(levelname)s %(message)s", stream=sys.stderr)
    agent: dict = {}
    if args.name:
        agent["name"] = args.name
    if args.slots is not None:
        agent["slots"] = args.slots
    if args.capabilities:
        agent["capabilities"] = [c.strip() for c in args.capabilities.split(",") if c.strip()]
    if args.runner:
        agent["runner"] = args.runner
    overrides: dict = {"agent": agent}
    if args.connect:
        overrides["endpoints"] = {"agents": args.connect}

    def make():
        from luzia.agents.worker import Worker  # after the flags: --help stays fast
        return Worker(config.load(overrides=overrides))
    return serve("luzia-agent", make)


if __name__ == "__main__":
    sys.exit(main())
