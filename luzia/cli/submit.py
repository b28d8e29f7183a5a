"""`luzia PROJECT TASK... [options]`: queue a job and print its id at once.

Kept lean on purpose (argparse, zmq, msgpack, our protocol): it must return well under
100 ms, so it imports neither click nor rich nor anything of the broker.
"""

from __future__ import annotations

import argparse
import json
import sys

from luzia.errors import LuziaError, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every usage error
        raise UsageError(message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="luzia", usage="luzia PROJECT TASK... [options]",
                description="Queue TASK for PROJECT and print agent:PROJECT:JOB_ID at once.")
    p.add_argument("project")
    p.add_argument("task", nargs="+")
    p.add_argument("--priority", choices=["critical", "high", "normal", "low"])
    p.add_argument("--type", help="task type (code, text, reasoning, …); default: detected")
    p.add_argument("--user", help="whose job this is (default: the project's owner)")
    p.add_argument("--timeout", type=float, help="seconds before the job is stopped")
    p.add_argument("--max-retries", type=int, help="retries after a failure")
    p.add_argument("--after", action="append", default=[], help="job id(s) to wait for")
    p.add_argument("--metadata", help="a JSON object kept with the job")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    return p


def run(argv: list[str]) -> int:
    try:
        return _run(argv)
    except LuziaError as exc:
        print(f"luzia: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    metadata = None
    if args.metadata is not None:
        try:
            metadata = json.loads(args.metadata)
        except ValueError as exc:
            raise UsageError(f"--metadata is not valid JSON: {exc}") from None
        if not isinstance(metadata, dict):
            raise UsageError("--metadata must be a JSON object, e.g. '{\"ticket\": 42}'")
    from luzia import client
    from luzia.config import load
    cfg = load()
    after = [a.strip() for item in args.after for a in item.split(",") if a.strip()]
    after = [_full_id(cfg, a) for a in after]
    spec = client.build(args.project, " ".join(args.task), cfg=cfg, priority=args.priority,
                        type=args.type, user=args.user, timeout=args.timeout,
                        max_retries=args.max_retries, after=after, metadata=metadata)
    done = client.send(spec, cfg)
    if args.json:
        from luzia.states import Priority
        print(json.dumps({"id": done.id, "project": spec.project, "user": spec.user,
                          "priority": Priority(spec.priority).label, "state": "pending",
                          "broker": "reachable" if done.reachable else "unreachable",
                          "spooled": done.spooled}))
    else:
        print(f"agent:{spec.project}:{done.id}")
    if not done.reachable:
        print(f"luzia: queued; broker not reachable (spooled in {done.spool_dir}; "
              "it runs when the broker is back)", file=sys.stderr)
    return 0


def _full_id(cfg, ident: str) -> str:
    from luzia.ids import JOB_ID_RE
    if JOB_ID_RE.match(ident):
        return ident
    from luzia.client import Control
    return Control(cfg).call("jobs.get", id=ident)["id"]
