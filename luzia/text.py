"""Text that came from outside (task text, program output) made safe for a terminal."""

from __future__ import annotations

import re

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[@-Z\\-_]"
                     r"|[\x00-\x08\x0b-\x1f\x7f]")


def strip_terminal(text: str) -> str:
    """Remove escape sequences and control characters (keeps newlines and tabs)."""
    return ANSI_RE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


def one_line(text: str, width: int = 0) -> str:
    """`text` on one line without control characters, cut to `width` (0: no cut)."""
    flat = " ".join(strip_terminal(text).split())
    if width and len(flat) > width:
        return flat[:max(0, width - 1)] + "…"
    return flat
