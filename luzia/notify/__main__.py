"""`luzia-notify`: send the notifications `[notify]` asks for (the supervisor normally starts
it beside the broker when there are rules; docs/NOTIFY.md)."""

from __future__ import annotations

import argparse
import logging
import sys

from luzia import config
from luzia.service import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="luzia-notify", description=__doc__)
    parser.add_argument("--config", help="config file (default: $LUZIA_CONFIG or the usual places)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s notify %(levelname)s %(message)s", stream=sys.stderr)
    # Apprise's warnings reach our log inside our own line for the failed try (courier.py
    # reads them from its result), so they are kept but not printed twice
    apprise_log = logging.getLogger("apprise")
    apprise_log.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    apprise_log.propagate = args.verbose
    if args.config:
        import os
        os.environ["LUZIA_CONFIG"] = args.config

    def make():
        from luzia.notify.notifier import Notifier
        return Notifier(config.load())
    code = serve("luzia-notify", make)
    if code == 0:
        logging.getLogger("luzia.notify").info("notifier stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
