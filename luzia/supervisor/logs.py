"""A child's log: everything it prints, in a file rotated by size, plus the recent lines
numbered in memory so `luzia supervisor tail -f` can ask for "the lines after N"."""

from __future__ import annotations

import logging
import os
import sys
from collections import deque
from pathlib import Path
from typing import TextIO

log = logging.getLogger(__name__)

RECENT_LINES = 2000        # lines kept in memory per child for tail/follow
MAX_LINE = 64 * 1024       # a line longer than this is cut into pieces in memory (not on disk)


class RotatingLog:
    """`<name>.log`, rotated by size to `<name>.log.1` … `<name>.log.<backups>`."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self.file = open(path, "ab")

    def write(self, data: bytes) -> None:
        """Append `data`; no file grows past max_bytes (cut at a line end when one fits)."""
        try:
            while data:
                part = data
                if self.max_bytes:
                    room = self.max_bytes - self.file.tell()
                    if room <= 0:
                        self.rotate()
                        continue
                    if len(data) > room:
                        part = data[:data.rfind(b"\n", 0, room) + 1 or room]
                self.file.write(part)
                data = data[len(part):]
            self.file.flush()
        except OSError as exc:  # a full disk must not take the supervisor down
            log.error("cannot write %s: %s", self.path, exc)

    def rotate(self) -> None:
        self.file.close()
        for i in range(self.backups - 1, 0, -1):
            older = self.backup(i)
            if older.exists():
                os.replace(older, self.backup(i + 1))
        if self.backups:
            os.replace(self.path, self.backup(1))
        else:
            self.path.unlink(missing_ok=True)
        self.file = open(self.path, "ab")

    def backup(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{i}")

    def tail(self, lines: int) -> list[str]:
        """The last `lines` lines on disk, reaching into the previous file after a rotation."""
        out: list[str] = []
        for path in (self.path, self.backup(1)):
            try:
                with open(path, "rb") as f:
                    f.seek(0, os.SEEK_END)
                    f.seek(max(0, f.tell() - 256 * 1024))
                    out = f.read().decode(errors="replace").splitlines() + out
            except OSError:
                pass
            if len(out) >= lines:
                break
        return out[-lines:]

    def close(self) -> None:
        self.file.close()


class ChildOutput:
    """Splits a child's output into lines: to its RotatingLog, to memory, and (echo) to our
    stdout prefixed with the child's name, like honcho."""

    def __init__(self, name: str, file: RotatingLog, echo: bool = False,
                 stream: TextIO | None = None) -> None:
        self.name = name
        self.file = file
        self.echo = echo
        self.stream = stream
        self.recent: deque[str] = deque(maxlen=RECENT_LINES)
        self.seq = 0               # lines seen since the supervisor started
        self._partial = b""

    def feed(self, data: bytes) -> None:
        self.file.write(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_LINE:
            lines.append(self._partial)
            self._partial = b""
        for raw in lines:
            self._line(raw.decode(errors="replace"))

    def flush(self) -> None:
        """The child ended: its last line without a newline is still a line."""
        if self._partial:
            self._line(self._partial.decode(errors="replace"))
            self._partial = b""

    def _line(self, text: str) -> None:
        self.seq += 1
        self.recent.append(text)
        if self.echo:
            stream = self.stream or sys.stdout
            try:
                stream.write(f"{self.name:>7} | {text}\n")
                stream.flush()
            except (OSError, ValueError):  # terminal gone: keep supervising, stop echoing
                self.echo = False

    def tail(self, lines: int, after: int | None = None) -> tuple[list[str], int]:
        """(lines, seq): the last `lines` lines, or those numbered after `after` (follow)."""
        if after is None:
            return self.file.tail(lines), self.seq
        if after > self.seq:       # the supervisor restarted under the follower: start over
            after = 0
        new = max(0, min(self.seq - after, len(self.recent), lines))
        return (list(self.recent)[len(self.recent) - new:] if new else []), self.seq
