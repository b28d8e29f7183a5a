"""`luzia-broker`: run the broker in the foreground (the supervisor normally starts it)."""

from __future__ import annotations

import argparse
import gc
import logging
import sys

from luzia import config
from luzia.errors import StoreError
from luzia.service import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="luzia-broker", description=__doc__)
    parser.add_argument("--config", help="config file (default: $LUZIA_CONFIG or the usual places)")
    parser.add_argument("--bind", metavar="ENDPOINT",
                        help="agents endpoint, e.g. tcp://0.0.0.0:5555 (submit/control/events "
                             "take the next three ports)")
    parser.add_argument("--insecure", action="store_true",
                        help="allow non-local endpoints without CURVE keys (anyone who can "
                             "reach them can run jobs)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s broker %(levelname)s %(message)s", stream=sys.stderr)
    if args.config:
        import os
        os.environ["LUZIA_CONFIG"] = args.config
    overrides: dict = {}
    if args.insecure:
        overrides["broker"] = {"insecure": True}
    if args.bind:
        overrides["endpoints"] = _endpoints_from(args.bind)

    def make():
        import sqlite3

        from luzia.broker.server import Broker
        cfg = config.load(overrides=overrides)
        try:
            broker = Broker(cfg)
        except sqlite3.DatabaseError as exc:    # a bad page the start's quick_check passed
            from luzia.broker.dbfile import mark_failed, one_line
            mark_failed(cfg.broker.db, one_line(str(exc)))    # the next start checks in full
            raise StoreError(f"job database {cfg.broker.db} failed at start: {one_line(str(exc))}"
                             ": see `luzia db check`, then `luzia db recover` with the broker "
                             "stopped") from None
        _collect_less()
        return broker
    code = serve("luzia-broker", make)
    if code == 0:
        logging.getLogger("luzia.broker").info("broker stopped")
    return code


def _collect_less() -> None:
    """The cycle collector, tuned for a broker that holds every unfinished job: what the
    start built (modules, config, the jobs read back) is frozen out of its sweeps, and it
    runs once a million tracked objects more are alive, not ten thousand. With the defaults
    a flood of submissions paid a full sweep of the growing queue each time it grew by a
    quarter (10-20 % of the broker's CPU, BENCHMARKS.md "Narrower rows"); at (10,000, 20,
    100) the young sweeps, every 10,000 objects, still walked each new job on its way to
    the old generation: ~2 µs of the ~24 a submission costs (DECISIONS 88). Jobs are freed
    by reference counting; the collector is only for cycles, which the broker's objects
    rarely make, and a million objects is the most cyclic garbage it lets wait (~100-200 MB
    at worst)."""
    gc.freeze()
    gc.set_threshold(1_000_000, 2, 100)


def _endpoints_from(bind: str) -> dict[str, str]:
    scheme, _, rest = bind.partition("://")
    if scheme != "tcp":
        return {"agents": bind}
    host, _, port = rest.rpartition(":")
    try:
        base = int(port)
    except ValueError:
        raise SystemExit(f"luzia-broker: --bind wants tcp://HOST:PORT, got {bind!r}") from None
    return {"agents": bind, "submit": f"tcp://{host}:{base + 1}",
            "control": f"tcp://{host}:{base + 2}", "events": f"tcp://{host}:{base + 3}"}


if __name__ == "__main__":
    sys.exit(main())
