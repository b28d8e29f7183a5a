"""Text that came from outside (task text, program output) made safe for a terminal."""

from __future__ import annotations

import re

# compiled by `re` on its first use (and cached there), not at import: the submit path
# imports this module and rarely strips anything
ANSI = (r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[@-Z\\-_]"
        r"|[\x00-\x08\x0b-\x1f\x7f]")


def strip_terminal(text: str) -> str:
    """Remove escape sequences and control characters (keeps newlines and tabs)."""
    return re.sub(ANSI, "", text.replace("\r\n", "\n").replace("\r", "\n"))


def one_line(text: str, width: int = 0) -> str:
    """`text` on one line without control characters, cut to `width` (0: no cut)."""
    flat = " ".join(strip_terminal(text).split())
    if width and len(flat) > width:
        return flat[:max(0, width - 1)] + "…"
    return flat


def clip(value: object, width: int = 40) -> str:
    """`repr(value)` cut to `width`: how an error names what was typed, however long."""
    return one_line(repr(value), width)


def not_utf8(value: str) -> str:
    """Why `value` cannot travel as UTF-8, "" if it can. A byte that is not UTF-8 in a
    command line arrives as a lone surrogate (Python's surrogateescape); a JSON escape
    (`"\\ud800"`) can make one from valid input too."""
    try:
        value.encode()
        return ""
    except UnicodeEncodeError as exc:
        char, at = value[exc.start], exc.start + 1
    if "\udc80" <= char <= "\udcff":
        return f"is not valid UTF-8 (byte 0x{ord(char) - 0xdc00:02x} at character {at})"
    return f"holds a lone surrogate \\u{ord(char):04x} at character {at}, which is not text"
