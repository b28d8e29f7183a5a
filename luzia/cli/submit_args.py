"""The argparse parser of `luzia PROJECT TASK... [options]`: its help, and every command
line that luzia/cli/submit.py's quick reading does not take (an error, --help, an odd
form), with argparse's words for what is wrong. Kept out of a plain submit: argparse, its
gettext lookups and building the parser cost ~3.5 ms of every one (issue 15)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from luzia.errors import UsageError
from luzia.states import PRIORITY_WORDS
from luzia.text import clip

DESCRIPTION = """Queue TASK for PROJECT and print agent:PROJECT:JOB_ID at once; the broker runs
it later. Task words are joined with spaces; put `--` before task words that start with `-`.
Other commands: luzia --help."""

EPILOG = """exit codes: 0 queued (also when the broker is down and the job waits in the
spool), 2 bad option, unknown project, or --user naming someone else without being an admin,
3 broker unreachable (or it refused this host's CURVE key) and nothing spooled,
73 spool not writable, 75 rejected by the broker (queue full, unknown dependency: the job
is kept as `rejected`, see luzia jobs ID)."""


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
    p.add_argument("--priority", choices=PRIORITY_WORDS, help="default: the project's")
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
