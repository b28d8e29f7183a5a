"""Attention: a running job whose pane waits for a person gets the flag `needs input`.

What the pane shows is read, never what the program means: the pane's last `lines`
non-blank lines (box-drawing borders taken off, as a TUI dialog draws them) are searched
for `attention.patterns` (Claude Code's permission and trust dialogs, `(y/n)`, `[Y/n]`,
`Proceed?` at the end of the screen, …), or, with `idle_seconds`, the pane stayed unchanged
that long and its last line is a question. A match must hold on two looks in a row, so
text streaming past (a log line that says "(y/n)") raises nothing.

The flag drops when the pane moves on (no pattern matches any more, the question's screen
changed) or when the job is answered: `luzia reply` sets the session's `@luzia-answered`
option (layout.ANSWERED_OPTION), and the screen it answered does not raise the flag again
until it changes. The agent looks every `attention.check` seconds (held.py); the REPL
watcher (repl.py) asks `asking()` so that a REPL waiting on a question is not taken as done
when its pane goes idle. The default patterns are config.ATTENTION_PATTERNS. Imports
nothing of ours: the REPL watcher starts once per job.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from luzia.config import Config

BORDERS = "".join(chr(c) for c in range(0x2500, 0x2580)) + " \t"   # box drawing, blanks
LINE_MAX = 300           # characters kept of one shown line
QUESTION = re.compile(r"\?[\"')\]]*\s*$")


@dataclass(frozen=True)
class Screen:
    """What a job's pane shows now: its visible lines (trailing blank lines dropped) and the
    session's answered mark ("" when nobody answered through `luzia reply`)."""

    lines: list[str]
    answered: str = ""


def window(lines: Sequence[str], count: int) -> list[str]:
    """The last `count` non-blank lines, borders and trailing blanks taken off."""
    out: list[str] = []
    for line in reversed(lines):
        text = line.strip(BORDERS)
        if text:
            out.append(text[:LINE_MAX])
            if len(out) == count:
                break
    return out[::-1]


class Detector:
    """The patterns, compiled once."""

    def __init__(self, patterns: Sequence[str], lines: int = 10) -> None:
        self.regexes = [re.compile(p, re.MULTILINE) for p in patterns]
        self.lines = lines

    def asking(self, lines: Sequence[str]) -> bool:
        """A pattern matches the pane's last lines (the pane's lines as captured)."""
        text = "\n".join(window(lines, self.lines))
        return any(r.search(text) for r in self.regexes)


@dataclass
class Watch:
    """One job's pane, looked at now and then: is it waiting for a person?"""

    detector: Detector
    idle_seconds: float = 0.0         # 0: only the patterns
    check: float = 1.0                # seconds between looks
    flagged: bool = False
    lines: list[str] = field(default_factory=list)   # what it showed when flagged
    next_check: float = 0.0
    digest: str = ""                  # the last look's window
    changed_at: float = 0.0           # when the window last changed
    matched: bool = False             # a pattern matched on the last look
    mark: str | None = None           # the session's answered mark (None: not read yet)
    hushed: str = ""                  # a window answered: not flagged again until it changes

    def look(self, screen: Screen | None, now: float) -> str:
        """Record a look at the pane (None: it has none now): "up" or "down" when the flag
        changes, "lines" when it stays up over other lines, else ""."""
        self.next_check = now + self.check
        if screen is None:
            self.matched = False
            return self._set(False, [])
        shown = window(screen.lines, self.detector.lines)
        digest = hashlib.blake2b("\n".join(shown).encode(errors="replace"),
                                 digest_size=16).hexdigest()
        if digest != self.digest:
            self.digest, self.changed_at = digest, now
        if self.mark is None:             # the first look: a mark already there is older
            self.mark = screen.answered
        elif screen.answered != self.mark:
            self.mark, self.hushed = screen.answered, digest
        if self.hushed and self.hushed != digest:
            self.hushed = ""
        if self.hushed:                   # what was answered counts as no match at all
            self.matched = False
            return self._set(False, shown)
        return self._set(self._waiting(shown, now), shown)

    def _waiting(self, shown: list[str], now: float) -> bool:
        text = "\n".join(shown)
        was, self.matched = self.matched, any(r.search(text) for r in self.detector.regexes)
        if self.matched and was:
            return True
        return bool(self.idle_seconds and shown and now - self.changed_at >= self.idle_seconds
                    and QUESTION.search(shown[-1]))

    def _set(self, waiting: bool, shown: list[str]) -> str:
        if waiting == self.flagged:
            if not waiting or shown == self.lines:
                return ""
            self.lines = shown              # still waiting, showing something else (a choice)
            return "lines"
        self.flagged, self.lines = waiting, shown if waiting else []
        return "up" if waiting else "down"


def watch_for(cfg: Config) -> Watch | None:
    """The watch for a job under this agent's [attention] settings, None when it is off."""
    at = cfg.attention
    if not at.enabled or cfg.agent.runner == "subprocess":
        return None
    return Watch(Detector(at.patterns, at.lines), idle_seconds=at.idle_seconds, check=at.check)
