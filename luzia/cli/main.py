"""Entry point of `luzia`: `luzia PROJECT TASK...` takes the lean submit path (no click,
no rich); a command name, an option or nothing goes to the click application
(root.py)."""

from __future__ import annotations

import os
import sys

from luzia.cli.names import COMMANDS


def program() -> None:
    """The `luzia` program (its console script, `python -m luzia.cli`): main(), then out.
    A submission leaves without the interpreter's teardown (os._exit once its output is
    flushed): freeing every module and object cost ~6 ms of a ~45 ms `luzia PROJECT TASK`
    (issue 15), and a submission leaves nothing to close: its spool file is synced and
    closed, the push's context terminated (the message handed over), each file it wrote
    closed. Any other command exits as usual: click and rich may hold what a teardown must
    finish."""
    args = sys.argv[1:]
    code = main(args)
    if submits(args):
        try:
            sys.stdout.flush()
        except BrokenPipeError:      # the reader went away: as main() takes it
            pass
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def submits(args: list[str]) -> bool:
    """`luzia PROJECT TASK...`: the lean submit path, not a command of the application."""
    return bool(args) and args[0] not in COMMANDS and not args[0].startswith("-")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if submits(args):
            from luzia.cli.submit import run
            return run(args)
        from luzia.cli.root import run_app
        return run_app(args)
    except BrokenPipeError:
        # the reader went away (luzia jobs | head): not an error worth a traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
