"""`luzia PROJECT TASK... [options]`: queue a job and print `agent:PROJECT:ID` at once.

The submit fast path: it runs for every submission, so it imports argparse and what a
submission needs (config, msgpack and zmq once a socket is opened), never click, rich,
msgspec (luzia.submitbody packs the Submit; issue 15) or anything of the broker, agents or
supervisor. main.py sends every first argument that is
not a command name or an option here.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from luzia import layout
from luzia.errors import LuziaError, UsageError
from luzia.text import clip, one_line

# 0-3 too: the Beads priorities of the older async dispatcher (seed 003, docs/GLOSSARY.md)
PRIORITIES = ("critical", "high", "normal", "low", "0", "1", "2", "3")

DESCRIPTION = """Queue TASK for PROJECT and print agent:PROJECT:JOB_ID at once; the broker runs
it later. Task words are joined with spaces; put `--` before task words that start with `-`.
Other commands: luzia --help."""

EPILOG = """exit codes: 0 queued (also when the broker is down and the job waits in the
spool), 2 bad option, unknown project, or --user naming someone else without being an admin,
3 broker unreachable (or it refused this host's CURVE key) and nothing spooled,
73 spool not writable, 75 rejected by the broker (queue full, unknown dependency: the job
is kept as `rejected`, see luzia jobs ID)."""

REJECTION_PATIENCE = 2.0   # seconds to wait for the broker to take the job before asking
LINE_MAX = 500             # characters of an error line, whatever was typed


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (one line, exit 2) instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        import re
        message = re.sub(r"\S{60,}", lambda m: m[0][:40] + "…", message)  # argparse echoes input
        if message.startswith("unrecognized arguments"):
            message += " (put -- before task words that start with -)"
        raise UsageError(message)


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, minus its `import shutil` (and bz2, lzma, zlib): argparse
    builds one per add_argument, and the submit path pays for every import. The width is
    shutil.get_terminal_size()'s: $COLUMNS, else the terminal's, else 80."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_columns() - 2)


def _columns() -> int:
    import os
    try:
        if int(os.environ["COLUMNS"]) > 0:
            return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants seconds, not {clip(value)}") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return seconds


def _retries(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a whole number, not {clip(value)}") from None
    if count < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return count


def _metadata(value: str) -> dict[str, Any]:
    import json
    try:
        meta = json.loads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"is not valid JSON: {exc}") from None
    except RecursionError:
        raise argparse.ArgumentTypeError("is nested too deeply") from None
    if not isinstance(meta, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"ticket\": 42}'")
    return meta


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="luzia", usage="luzia PROJECT TASK... [options]", description=DESCRIPTION,
                epilog=EPILOG, allow_abbrev=False, formatter_class=_Formatter)
    p.add_argument("project", help="a project declared in luzia.toml ([projects.NAME])")
    p.add_argument("task", nargs="*", help="what to do")
    p.add_argument("--priority", choices=PRIORITIES, help="default: the project's")
    p.add_argument("--type", help="code, text, reasoning, ... (default: the project's, else "
                                  "detected from the text)")
    p.add_argument("--user", help="whose job it is (default: the project's owner); naming someone "
                                  "other than yourself or the owner needs an admin")
    p.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                   help="stop the job after this long (default: the project's, else the task "
                        "type's [scheduler.timeouts], else the global timeout)")
    p.add_argument("--max-retries", type=_retries, metavar="N", help="retries after a failure")
    p.add_argument("--after", action="append", default=[], metavar="ID[,ID]",
                   help="run only after these jobs completed (repeatable; unique prefixes "
                        "are resolved by the broker)")
    p.add_argument("--metadata", type=_metadata, metavar="JSON", help="a JSON object kept with the job")
    ws = p.add_mutually_exclusive_group()
    ws.add_argument("--base", metavar="REF", help="with a project `repo`: the branch, tag or "
                                                  "commit its worktree starts from (default: "
                                                  "the project's base, else the repo's HEAD)")
    ws.add_argument("--with-local-changes", action="store_true",
                    help="with a local project `repo` on this host: start from its checkout "
                         "as it is now, uncommitted changes included")
    p.add_argument("--dry-run", "-n", action="store_true",
                   help="say what would be queued, with the project's defaults; queue nothing")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of the id line")
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line as asked, before the project's defaults. Task words after `--` are
    taken verbatim (argparse alone would drop a literal `--` among them)."""
    head, tail = argv, []
    if "--" in argv:
        cut = argv.index("--")
        head, tail = argv[:cut], argv[cut + 1:]
    args = parser().parse_intermixed_args(head)
    args.task = [*args.task, *tail]
    args.after = [a.strip() for item in args.after for a in item.split(",") if a.strip()]
    if not " ".join(args.task).strip():
        raise UsageError(f"the task is empty; say what to do, e.g. luzia {args.project} \"hello\"")
    return args


def run(argv: list[str]) -> int:
    """The fast path's whole life: parse, build, spool, push, print. Returns the exit code."""
    _defer_inspect()
    try:
        return _run(argv)
    except LuziaError as exc:
        print(f"luzia: {one_line(str(exc), LINE_MAX)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _defer_inspect() -> None:
    """Import dataclasses (the config's) with `inspect` loaded at its first use, not at once:
    inspect brings ast, dis and tokenize (~5 ms of every submit) for one call that an @frozen
    class never makes (luzia/frozen.py). importlib's LazyLoader would not do: an `import`
    statement of a lazy module loads it."""
    if "dataclasses" in sys.modules or "inspect" in sys.modules:
        return
    import importlib
    import types
    stand_in = types.ModuleType("inspect")
    stand_in.__getattr__ = lambda name: getattr(importlib.import_module("inspect"), name)
    sys.modules["inspect"] = stand_in
    try:
        import dataclasses  # noqa: F401
    finally:
        if sys.modules.get("inspect") is stand_in:
            del sys.modules["inspect"]


def _run(argv: list[str]) -> int:
    args = parse(argv)
    from luzia import client
    from luzia.config import load
    cfg = load()
    owner = cfg.project(args.project).user   # an unknown project fails before any round trip
    after = [_full_id(cfg, a) for a in args.after]
    job = client.prepare(args.project, " ".join(args.task), cfg=cfg, priority=args.priority,
                         type=args.type, user=args.user, timeout=args.timeout,
                         max_retries=args.max_retries, after=after, metadata=args.metadata,
                         base=args.base, with_local_changes=args.with_local_changes,
                         dry_run=args.dry_run)
    if args.dry_run:
        _would(cfg, job, args.json)
        return 0
    other_user = job["user"] != owner
    if other_user:
        _check_may_submit_as(cfg, job["user"], owner)
    done = client.send(job, cfg)
    if args.json:
        import json

        from luzia.states import Priority
        print(json.dumps({"id": done.id, "project": job["project"], "user": job["user"],
                          "priority": Priority(job["priority"]).label, "state": "pending",
                          "broker": "reachable" if done.reachable else "unreachable",
                          "spooled": done.spooled}))
    else:
        print(f"agent:{job['project']}:{done.id}")
        if sys.stdout.isatty():      # a person, not a script: the next commands, dimmed
            _next_steps(done.id)
    if done.why:
        print(f"luzia: queued in the spool {done.spool_dir}, not sent: {done.why}", file=sys.stderr)
    elif not done.reachable:
        print(f"luzia: queued; broker not reachable (spooled in {done.spool_dir}, "
              f"it runs when the broker is back; {client.start_hint(cfg)})", file=sys.stderr)
    elif done.spooled and (after or other_user or (cfg.run_dir / layout.QUEUE_FULL).exists()):
        _check_not_rejected(cfg, done.id)
    return 0


def _check_may_submit_as(cfg: Any, user: str, owner: str) -> None:
    """Forbidden (exit 2, nothing sent) when --user names someone other than the project's
    owner and we are neither that user nor an admin. The broker says who we are (a CURVE
    key's user is known only there); the broker judges every submission again anyway."""
    from luzia import identity
    from luzia.client import Control, sweeps_here
    from luzia.errors import BrokerUnreachable, Forbidden
    try:
        with Control(cfg) as ctl:
            me = ctl.call("whoami")
    except BrokerUnreachable:
        if sweeps_here(cfg):
            return   # we may write the broker's spool: we are its user or root, both admins
        raise
    except LuziaError:
        return       # a broker without whoami: it judges on its own
    name = me.get("user") if isinstance(me, dict) else None
    admin = bool(me.get("admin")) if isinstance(me, dict) else False
    why = identity.refusal(name if isinstance(name, str) else None, user, owner, admin)
    if why:
        raise Forbidden(why[len(identity.NOT_ALLOWED):])


def _next_steps(job_id: str) -> None:
    import os
    line = f"  luzia jobs {job_id} --watch  ·  luzia logs {job_id} -f  ·  luzia attach {job_id}"
    print(line if os.environ.get("NO_COLOR") else f"\x1b[2m{line}\x1b[0m", flush=True)


def _would(cfg: Any, job: dict[str, Any], as_json: bool) -> None:
    """--dry-run: the job as it would be queued (the project's defaults applied), and where;
    in JSON, null where the broker decides (type, timeout)."""
    from luzia.client import sweeps_here
    from luzia.states import Priority
    where = (f"spool {cfg.spool_dir}, then {cfg.endpoints.submit}" if sweeps_here(cfg)
             else cfg.endpoints.submit)
    fields = {"project": job["project"], "user": job["user"],
              "priority": Priority(job["priority"]).label, "type": job["type"] or None,
              "timeout": job["timeout"] or None, "max_retries": job["max_retries"],
              "after": list(job["after"]), "metadata": dict(job["metadata"]),
              "workdir": job["workdir"] or None, "repo": job["repo"] or None,
              "base": job["base"] or None, "task": job["task"], "to": where}
    if as_json:
        import json
        print(json.dumps({"dry_run": True, **fields}))
        return
    words = {"type": "detected by the broker from the text",
             "timeout": "the type's or the global default", "workdir": "its job directory",
             "repo": "none: no worktree", "base": "the repo's HEAD" if job["repo"] else "-"}
    print(f"would queue for {job['project']}:")
    for name, value in fields.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        print(f"  {name:12} {shown if shown not in (None, '', {}) else words.get(name, '-')}")
    print("dry run: nothing was queued")


def _check_not_rejected(cfg: Any, job_id: str) -> None:
    """Raise Rejected (Forbidden for its --user) if the broker rejected the job. Asked only
    when a rejection is likely (the broker marks a full queue in run/queue-full; a dependency
    may be unknown; --user names someone else), once the broker has taken the job from the
    spool; silent if it has not within a moment."""
    import time
    spooled = cfg.spool_dir / f"{job_id}.job"
    deadline = time.monotonic() + REJECTION_PATIENCE
    while spooled.exists():
        if time.monotonic() > deadline:
            return
        time.sleep(0.01)  # polling step while the broker commits the job
    from luzia.client import Control
    from luzia.errors import Rejected
    with Control(cfg) as ctl:
        try:
            job = ctl.call("jobs.get", id=job_id)
        except LuziaError:
            return   # the job is queued either way; `luzia jobs ID` tells the rest
    if isinstance(job, dict) and job.get("state") == "rejected":
        reason = str(job.get("reason") or "no reason given")
        from luzia.identity import NOT_ALLOWED
        if reason.startswith(NOT_ALLOWED):        # its --user: a usage error (exit 2)
            from luzia.errors import Forbidden
            raise Forbidden(f"job {job_id} rejected: {reason[len(NOT_ALLOWED):]}")
        raise Rejected(f"job {job_id} rejected: {reason}")


def _full_id(cfg: Any, ident: str) -> str:
    """A full job id for --after; only a shorter prefix costs a round trip to the broker."""
    from luzia.ids import JOB_ID_RE, JOB_PREFIX_RE
    if JOB_ID_RE.fullmatch(ident):
        return ident
    if not JOB_PREFIX_RE.fullmatch(ident):
        raise UsageError(f"--after wants job ids like 113754-a2f5c10e9b3d (or a unique prefix "
                         f"of 6+ characters), not {clip(ident)}")
    from luzia.client import Control
    with Control(cfg) as ctl:
        job = ctl.call("jobs.get", id=ident)
    found = job.get("id") if isinstance(job, dict) else None
    if not isinstance(found, str) or not JOB_ID_RE.fullmatch(found):
        from luzia.errors import ProtocolError
        raise ProtocolError(f"the broker answered jobs.get {clip(ident)} with no valid job id")
    return found
