"""`luzia PROJECT TASK... [options]`: queue a job and print `agent:PROJECT:ID` at once.

The submit fast path: it runs for every submission, so it imports what a submission needs
(config, msgpack and zmq once a socket is opened), never click, rich, msgspec
(luzia.submitbody packs the Submit) or anything of the broker, agents or supervisor, and
argparse (submit_args.py) only for a command line it does not read itself (issue 15).
main.py sends every first argument that is not a command name or an option here.
"""

from __future__ import annotations

import sys
from typing import Any

from luzia import layout
from luzia.errors import LuziaError, UsageError
from luzia.states import PRIORITY_WORDS
from luzia.text import clip, one_line

REJECTION_PATIENCE = 2.0   # seconds to wait for the broker to take the job before asking
LINE_MAX = 500             # characters of an error line, whatever was typed

# submit_args.parser()'s options, for the quick reading: those that take a value, the flags
VALUED = {"--priority": "priority", "--type": "type", "--user": "user", "--timeout": "timeout",
          "--max-retries": "max_retries", "--after": "after", "--metadata": "metadata",
          "--base": "base"}
FLAGS = {"--with-local-changes": "with_local_changes", "--dry-run": "dry_run", "-n": "dry_run",
         "--json": "json"}


def parse(argv: list[str]) -> Any:
    """The command line as asked, before the project's defaults. Task words after `--` are
    taken verbatim (argparse alone would drop a literal `--` among them)."""
    head, tail = argv, []
    if "--" in argv:
        cut = argv.index("--")
        head, tail = argv[:cut], argv[cut + 1:]
    args = _quick(head)
    if args is None:
        from luzia.cli.submit_args import parser
        args = parser().parse_intermixed_args(head)
    args.task = [*args.task, *tail]
    args.after = [a.strip() for item in args.after for a in item.split(",") if a.strip()]
    if not " ".join(args.task).strip():
        raise UsageError(f"the task is empty; say what to do, e.g. luzia {args.project} \"hello\"")
    return args


def _quick(argv: list[str]) -> Any:
    """What submit_args.parser() makes of a command line that is plainly valid, read without
    argparse; None for anything else (a mistake, --help, an option's value that starts with
    `-`, ...): argparse reads those, and says what is wrong in its words.
    tests/cli/test_submit_args.py holds the two equal."""
    found: dict[str, Any] = {"task": [], "after": []}
    for name in (*VALUED.values(), *FLAGS.values()):
        found.setdefault(name, False if name in FLAGS.values() else None)
    words = iter(argv)
    for word in words:
        if not word.startswith("-"):
            found["task"].append(word)
            continue
        option, given, value = word.partition("=")
        if option in FLAGS and not given:
            found[FLAGS[option]] = True
            continue
        name = VALUED.get(option, "")
        if not name:
            return None
        if not given:
            value = next(words, "-")
            if value.startswith("-"):
                return None
        converted = _value(name, value)
        if converted is None:
            return None
        if name == "after":
            found["after"].append(converted)
        else:
            found[name] = converted
    if not found["task"] or (found["base"] is not None and found["with_local_changes"]):
        return None
    import types
    return types.SimpleNamespace(project=found["task"].pop(0), **found)


def _value(name: str, text: str) -> Any:
    """An option's value as submit_args' converters make it; None if they would refuse it."""
    try:
        if name == "priority":
            return text if text in PRIORITY_WORDS else None
        if name == "timeout":
            seconds = float(text)
            return seconds if 0 < seconds < float("inf") else None
        if name == "max_retries":
            count = int(text)
            return count if count >= 0 else None
        if name == "metadata":
            import json
            meta = json.loads(text)
            return meta if isinstance(meta, dict) else None
    except (ValueError, RecursionError):
        return None
    return text


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
    # a module's __getattr__ answers for the names it has not (PEP 562): all of them
    vars(stand_in)["__getattr__"] = lambda name: getattr(importlib.import_module("inspect"), name)
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
