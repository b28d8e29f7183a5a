"""Entry point of `luzia`: `luzia PROJECT TASK...` takes the lean submit path (no click,
no rich); a command name, an option or nothing goes to the click application
(root.py)."""

from __future__ import annotations

import os
import sys

from luzia.cli.names import COMMANDS


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args and args[0] not in COMMANDS and not args[0].startswith("-"):
            from luzia.cli.submit import run
            return run(args)
        from luzia.cli.root import run_app
        return run_app(args)
    except BrokenPipeError:
        # the reader went away (luzia jobs | head): not an error worth a traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
