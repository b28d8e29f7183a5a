"""`luzia PROJECT TASK... [options]`: queue a job and print its id at once.

Kept lean on purpose: no click, no rich, no argparse (its set-up alone costs ~10 ms), nothing
of the broker. The options are few and fixed, so a small parser reads them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from luzia.errors import LuziaError, UsageError

PRIORITIES = ("critical", "high", "normal", "low")

USAGE = """usage: luzia PROJECT TASK... [options]

Queue TASK for PROJECT and print agent:PROJECT:JOB_ID at once (the broker runs it later).
Task words are joined with spaces; put `--` before a task that starts with `-`.

options:
  --priority P       critical, high, normal or low (default: the project's)
  --type T           code, text, reasoning, ... (default: the project's, else detected)
  --user U           whose job it is (default: the project's owner)
  --timeout S        seconds before the job is stopped
  --max-retries N    retries after a failure
  --after ID[,ID]    run only after these jobs completed (repeatable; prefixes resolved)
  --metadata JSON    a JSON object kept with the job
  --json             print a JSON object instead of agent:PROJECT:ID
  -h, --help         this text

exit codes: 0 queued (also when spooled for a broker that is down), 2 usage or unknown
project, 3 broker unreachable and nothing spooled, 73 spool not writable."""

# the options that take a value, and the attribute each sets
_OPTIONS = {
    "--priority": "priority", "--type": "type", "--user": "user", "--timeout": "timeout",
    "--max-retries": "max_retries", "--after": "after", "--metadata": "metadata",
}


@dataclass
class SubmitArgs:
    """What the command line asked for, before the project's defaults are applied."""

    project: str = ""
    task: list[str] = field(default_factory=list)
    priority: str | None = None
    type: str | None = None
    user: str | None = None
    timeout: float | None = None
    max_retries: int | None = None
    after: list[str] = field(default_factory=list)
    metadata: dict | None = None
    json: bool = False
    help: bool = False


def parse(argv: list[str]) -> SubmitArgs:
    """Read `PROJECT TASK... [options]`; options may come anywhere, `--opt=value` works too."""
    args = SubmitArgs()
    words: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            words += argv[i:]
            break
        if arg in ("-h", "--help"):
            args.help = True
            continue
        if arg == "--json":
            args.json = True
            continue
        if not arg.startswith("--"):
            words.append(arg)      # "-v" in a task is a word of the task
            continue
        name, eq, value = arg.partition("=")
        if name not in _OPTIONS:
            raise UsageError(f"unknown option {name}; see luzia PROJECT --help")
        if not eq:
            if i >= len(argv):
                raise UsageError(f"{name} needs a value")
            value = argv[i]
            i += 1
        _set(args, name, value)
    if args.help:
        return args
    if not words:
        raise UsageError("no project given; usage: luzia PROJECT TASK... [options]")
    args.project, args.task = words[0], words[1:]
    if not " ".join(args.task).strip():
        raise UsageError(f"the task is empty; say what to do, e.g. luzia {args.project} \"hello\"")
    return args


def _set(args: SubmitArgs, name: str, value: str) -> None:
    attr = _OPTIONS[name]
    if attr == "priority":
        if value not in PRIORITIES:
            raise UsageError(f"--priority: invalid choice {value!r} "
                             f"(choose from {', '.join(PRIORITIES)})")
        args.priority = value
    elif attr == "timeout":
        try:
            args.timeout = float(value)
        except ValueError:
            raise UsageError(f"--timeout wants seconds, not {value!r}") from None
        if not args.timeout > 0:
            raise UsageError("--timeout must be more than 0 seconds")
    elif attr == "max_retries":
        try:
            args.max_retries = int(value)
        except ValueError:
            raise UsageError(f"--max-retries wants a whole number, not {value!r}") from None
        if args.max_retries < 0:
            raise UsageError("--max-retries must be 0 or more")
    elif attr == "after":
        args.after += [a.strip() for a in value.split(",") if a.strip()]
    elif attr == "metadata":
        import json
        try:
            meta = json.loads(value)
        except ValueError as exc:
            raise UsageError(f"--metadata is not valid JSON: {exc}") from None
        if not isinstance(meta, dict):
            raise UsageError("--metadata must be a JSON object, e.g. '{\"ticket\": 42}'")
        args.metadata = meta
    else:
        setattr(args, attr, value)


def run(argv: list[str]) -> int:
    """The fast path's whole life: parse, build, spool, push, print. Returns the exit code."""
    try:
        return _run(argv)
    except LuziaError as exc:
        print(f"luzia: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _run(argv: list[str]) -> int:
    args = parse(argv)
    if args.help:
        print(USAGE)
        return 0
    from luzia import client
    from luzia.config import load
    cfg = load()
    cfg.project(args.project)      # an unknown project fails before any broker round trip
    after = [_full_id(cfg, a) for a in args.after]
    spec = client.build(args.project, " ".join(args.task), cfg=cfg, priority=args.priority,
                        type=args.type, user=args.user, timeout=args.timeout,
                        max_retries=args.max_retries, after=after, metadata=args.metadata)
    done = client.send(spec, cfg)
    if args.json:
        import json
        print(json.dumps({"id": done.id, "project": spec.project, "user": spec.user,
                          "priority": _label(spec.priority), "state": "pending",
                          "broker": "reachable" if done.reachable else "unreachable",
                          "spooled": done.spooled}))
    else:
        print(f"agent:{spec.project}:{done.id}")
    if not done.reachable:
        print(f"luzia: queued; broker not reachable (spooled in {done.spool_dir}; "
              "it runs when the broker is back)", file=sys.stderr)
    return 0


def _label(priority: int) -> str:
    from luzia.states import Priority
    return Priority(priority).label


def _full_id(cfg, ident: str) -> str:
    """A full job id for --after; a shorter prefix is resolved by the broker."""
    from luzia.ids import JOB_ID_RE
    if JOB_ID_RE.match(ident):
        return ident
    from luzia.client import Control
    ctl = Control(cfg)
    try:
        return ctl.call("jobs.get", id=ident)["id"]
    finally:
        ctl.close()
