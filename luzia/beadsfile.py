"""Writing back to a Beads issues file (`.beads/issues.jsonl`, one JSON object a line) that
other programs write too: a person's `bd`, an agent appending issues.

What a write-back keeps:
- Every line it does not change, byte for byte; in a line it changes, every other field
  byte for byte (its spacing, key order, escapes, numbers): only the named fields' values
  are replaced, or added before the closing brace (`set_fields`).
- Every line another writer added meanwhile. The rewrite happens under an exclusive
  flock on `<file>.lock` (a cooperating writer takes it too), on what the file holds at
  that moment, merged by issue id; it is written to a temporary file and renamed over the
  file (atomic: a reader sees the old file or the new one). Bytes appended to the old file
  by a writer that does not lock, until the rename, are carried over; a file replaced
  meanwhile (another program's own rename) is read and merged again.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from luzia.places import fsync_path

REPLACED_RETRIES = 20     # a file replaced under us this many times in a row: give up this round


def issue_id(line: bytes) -> str | None:
    """The `id` of a line that is a JSON object with one; None for anything else."""
    try:
        entry = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    value = entry.get("id") if isinstance(entry, dict) else None
    return value if isinstance(value, str) and value else None


def set_fields(line: str, values: dict[str, Any]) -> str:
    """`line` (one JSON object) with `values` set: a member's value text replaced where the
    key is, appended after the last member where it is not (with the separators the line
    uses); nothing else changes."""
    members, close = _members(line)
    at = {key: (start, end) for key, _, start, end in members}
    edits = [(at[k][0], at[k][1], _dump(v)) for k, v in values.items() if k in at]
    new = [(k, v) for k, v in values.items() if k not in at]
    if new:
        comma, colon = _style(line, members)
        where = members[-1][3] if members else close
        text = "".join(f"{comma if i or members else ''}{_dump(k)}{colon}{_dump(v)}"
                       for i, (k, v) in enumerate(new))
        edits.append((where, where, text))
    for start, end, text in sorted(edits, reverse=True):
        line = line[:start] + text + line[end:]
    return line


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _members(line: str) -> tuple[list[tuple[str, int, int, int]], int]:
    """(key, key start, value start, value end) of each top-level member, and the index of
    the closing brace."""
    decoder = json.JSONDecoder()
    i = _skip(line, 0)
    if line[i:i + 1] != "{":
        raise ValueError("not a JSON object")
    i = _skip(line, i + 1)
    members: list[tuple[str, int, int, int]] = []
    if line[i:i + 1] == "}":
        return members, i
    while True:
        if line[i:i + 1] != '"':
            raise ValueError("a key was expected")
        key_start = i
        key, i = json.decoder.scanstring(line, i + 1)     # type: ignore[attr-defined]
        i = _skip(line, i)
        if line[i:i + 1] != ":":
            raise ValueError("':' was expected")
        start = _skip(line, i + 1)
        _, end = decoder.raw_decode(line, start)
        members.append((key, key_start, start, end))
        i = _skip(line, end)
        if line[i:i + 1] == "}":
            return members, i
        if line[i:i + 1] != ",":
            raise ValueError("',' or '}' was expected")
        i = _skip(line, i + 1)


def _skip(line: str, i: int) -> int:
    while i < len(line) and line[i] in " \t\r\n":
        i += 1
    return i


def _style(line: str, members: list[tuple[str, int, int, int]]) -> tuple[str, str]:
    """The separators the line uses between members and between a key and its value."""
    if not members:
        return ",", ":"
    key, key_start, start, _ = members[0]
    colon = line[key_start + len(_dump(key)):start] if line[key_start:].startswith(_dump(key)) \
        else ":"
    if len(members) > 1:
        return line[members[0][3]:members[1][1]], colon
    return ("," if colon.strip() == colon else ", "), colon


class BeadsFile:
    """An issues file, read and written back by id (module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")

    def read(self) -> list[tuple[str | None, bytes]]:
        """(issue id or None, raw line without its newline) for each line of the file."""
        return [(issue_id(line), line) for line in _lines(self.path.read_bytes())]

    def update(self, changes: dict[str, dict[str, Any]]) -> list[str]:
        """Set `changes[id]`'s fields in the line of each issue id; returns the ids found
        and changed. Atomic, and merged with what other writers did meanwhile."""
        if not changes:
            return []
        with self._locked():
            for _ in range(REPLACED_RETRIES):
                done = self._rewrite(changes)
                if done is not None:
                    return done
        return []

    def _rewrite(self, changes: dict[str, dict[str, Any]]) -> list[str] | None:
        """One try; None if the file was replaced by another program while we worked."""
        with open(self.path, "rb") as old:
            data = old.read()
            lines, done = [], []
            for line in _lines(data):
                found = issue_id(line)
                if found is not None and found in changes:
                    try:
                        line = set_fields(line.decode("utf-8"), changes[found]).encode("utf-8")
                        done.append(found)
                    except ValueError:
                        pass          # valid JSON that is not one plain object: left as it is
                lines.append(line)
            text = b"\n".join(lines) + (b"\n" if data.endswith(b"\n") else b"")
            tmp = self.path.with_name(f".{self.path.name}.luzia.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, text)
                os.fchmod(fd, os.fstat(old.fileno()).st_mode & 0o7777)
                while extra := old.read():     # appended to the old file while we wrote
                    os.write(fd, extra)
                os.fsync(fd)
            finally:
                os.close(fd)
            if os.stat(self.path).st_ino != os.fstat(old.fileno()).st_ino:
                os.unlink(tmp)                 # replaced meanwhile: merge with the new one
                return None
            os.rename(tmp, self.path)
            extra = old.read()                 # appended between the last read and the rename
        if extra:
            with open(self.path, "ab") as new:
                new.write(extra)
                new.flush()
                os.fsync(new.fileno())
        fsync_path(self.path.parent)
        return done

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)          # releases the lock


def _lines(data: bytes) -> list[bytes]:
    """The lines of `data` without their newlines (a last line without one kept as it is)."""
    parts = data.split(b"\n")
    return parts[:-1] if data.endswith(b"\n") else parts if data else []
