"""The wrapper's side of an output adapter: the command's output, as it comes, into the raw
stream file (output.jsonl), the readable lines into output.log (and the tmux pane), and what
the adapter learnt into usage.json — rewritten when it changes, at most every SAVE_EVERY
seconds, and once more at the end."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from luzia import layout
from luzia.agents.adapters import make

SAVE_EVERY = 0.5          # seconds between usage.json rewrites while the job runs
LINE_MAX = 16 << 20       # bytes of one line held back; a longer one is cut and counted malformed


class Tee:
    """Where the command's output goes when its format is not `none`."""

    def __init__(self, job_dir: Path, fmt: str, log: BinaryIO, pane: bool,
                 write_atomic: Callable[[Path, str], None]) -> None:
        self.adapter = make(fmt)
        self.raw = open(job_dir / layout.RAW_OUTPUT, "ab", buffering=0)
        self.log = log
        self.pane = pane
        self.usage = job_dir / layout.USAGE
        self.write_atomic = write_atomic
        self.pending = b""
        self.saved: dict | None = None
        self.saved_at = 0.0

    def write(self, data: bytes) -> None:
        self.raw.write(data)
        self.pending += data
        if b"\n" not in data:
            if len(self.pending) > LINE_MAX:
                self.adapter.malformed += 1
                self.pending = b""
            return
        *lines, self.pending = self.pending.split(b"\n")
        shown = [shown for line in lines for shown in self._feed(line)]
        # usage.json before output.log: the agent reads usage when it sees the output change,
        # and lines shown before it is written (the session id's) would go unreported until
        # the next output (none while the command works quietly)
        self.save()
        self._show(shown)

    def _feed(self, line: bytes) -> list[str]:
        return self.adapter.feed(line.decode(errors="replace").rstrip("\r"))

    def _show(self, lines: list[str]) -> None:
        if not lines:
            return
        text = "".join(line + "\n" for line in lines).encode()
        self.log.write(text)
        if self.pane:
            try:                   # the pane's tty is raw: it needs the carriage returns
                os.write(1, text.replace(b"\n", b"\r\n"))
            except OSError:
                pass

    def save(self, final: bool = False) -> None:
        """usage.json, when what it says changed (throttled unless `final`)."""
        now = time.monotonic()
        if not final and now - self.saved_at < SAVE_EVERY:
            return
        state = self.adapter.state()
        if state != self.saved or final:
            self.write_atomic(self.usage, json.dumps(state))
            self.saved, self.saved_at = state, now

    def close(self) -> None:
        if self.pending:
            self._show(self._feed(self.pending))
            self.pending = b""
        self.save(final=True)
        self.raw.close()
