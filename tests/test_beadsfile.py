"""Writing back to a Beads issues file (luzia/beadsfile.py): other fields and other lines
byte for byte, and no line lost to another writer — one appending under the lock in a
process of its own, one appending without it, one replacing the whole file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from luzia import beadsfile
from luzia.beadsfile import BeadsFile, set_fields

ODD = ('{ "id" : "bd-1" ,"status":"open", "n": 1.50e0, "t": "caf\\u00e9 \\"q\\"",'
       ' "x": {"b": [1, 2 ], "a": null} , "status_note": "open"}')


def test_set_fields_changes_only_the_named_values():
    out = set_fields(ODD, {"status": "closed", "closed_at": "2026-01-01T00:00:00+00:00"})
    assert out == ('{ "id" : "bd-1" ,"status":"closed", "n": 1.50e0, "t": "caf\\u00e9 \\"q\\"",'
                   ' "x": {"b": [1, 2 ], "a": null} , "status_note": "open" ,'
                   '"closed_at" : "2026-01-01T00:00:00+00:00"}')   # separators as its first two
    assert json.loads(out)["t"] == 'café "q"'
    assert set_fields('{"id": "a"}', {"notes": "x\ny ✓"}) == '{"id": "a", "notes": "x\\ny ✓"}'
    assert set_fields("{}", {"a": 1}) == '{"a":1}'
    with pytest.raises(ValueError):
        set_fields("[1, 2]", {"a": 1})


def write(path: Path, *lines: str, end: str = "\n") -> bytes:
    data = ("\n".join(lines) + end).encode()
    path.write_bytes(data)
    return data


def test_update_keeps_every_other_line_and_byte(tmp_path):
    path = tmp_path / "issues.jsonl"
    lines = [ODD, "not json at all", '{"id": "bd-2", "status": "open"}', "",
             '{"id": "bd-3", "status": "open", "title": "naïve \\u2713"}']
    write(path, *lines, end="")                       # no newline after the last line
    path.chmod(0o640)
    assert BeadsFile(path).update({"bd-2": {"status": "in_progress"}, "bd-9": {"x": 1}}) == ["bd-2"]
    after = path.read_text().split("\n")
    assert after == [ODD, "not json at all", '{"id": "bd-2", "status": "in_progress"}', "",
                     lines[4]]
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)
    assert not list(tmp_path.glob(".*tmp"))


APPENDER = r"""
import fcntl, json, os, sys
path, lock, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
for n in range(count):
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    with open(path, "a") as f:
        f.write(json.dumps({"id": f"new-{n}", "status": "open", "title": "appended"}) + "\n")
    os.close(fd)
print("done", flush=True)
"""


def test_a_concurrent_appender_loses_no_line(tmp_path):
    """Another process appends 300 issues under the lock while we write back 300 times."""
    path = tmp_path / "issues.jsonl"
    write(path, '{"id": "bd-1", "status": "open", "n": 0}', '{"id": "bd-2", "status": "open"}')
    file = BeadsFile(path)
    proc = subprocess.Popen([sys.executable, "-c", APPENDER, str(path), str(file.lock_path), "300"],
                            stdout=subprocess.PIPE)
    n = 0
    while proc.poll() is None or n < 5:
        n += 1
        assert file.update({"bd-1": {"n": n}}) == ["bd-1"]
    assert proc.wait(30) == 0
    lines = path.read_text().splitlines()
    ids = [json.loads(line)["id"] for line in lines]
    assert ids[:2] == ["bd-1", "bd-2"] and sorted(ids[2:]) == sorted(f"new-{i}" for i in range(300))
    assert json.loads(lines[0])["n"] == n and len(lines) == 302


def test_bytes_appended_without_the_lock_while_we_write_are_kept(tmp_path, monkeypatch):
    """A writer that does not lock appends between our read and our rename (made to happen
    at that moment here): its line reaches the new file."""
    path = tmp_path / "issues.jsonl"
    write(path, '{"id": "bd-1", "status": "open"}')
    real_write = os.write
    done: list[bool] = []

    def write_then_append(fd, data):
        written = real_write(fd, data)
        if not done:
            done.append(True)
            with open(path, "ab") as f:          # lands in the file we are replacing
                f.write(b'{"id": "late", "status": "open"}\n')
        return written
    monkeypatch.setattr(beadsfile.os, "write", write_then_append)
    BeadsFile(path).update({"bd-1": {"status": "closed"}})
    assert path.read_text() == '{"id": "bd-1", "status": "closed"}\n{"id": "late", "status": "open"}\n'


def test_a_file_replaced_meanwhile_is_merged_again(tmp_path, monkeypatch):
    """A program that writes the whole file anew (bd's export) renames it in while we
    work: we merge into its version, not over it."""
    path = tmp_path / "issues.jsonl"
    write(path, '{"id": "bd-1", "status": "open"}')
    real_fsync = os.fsync
    replaced: list[bool] = []

    def theirs_lands(fd):           # while our temporary file is being synced
        if not replaced:
            replaced.append(True)
            theirs = tmp_path / "theirs"
            write(theirs, '{"id": "bd-1", "status": "open", "title": "edited"}',
                  '{"id": "bd-2", "status": "open"}')
            os.rename(theirs, path)
        return real_fsync(fd)
    monkeypatch.setattr(beadsfile.os, "fsync", theirs_lands)
    BeadsFile(path).update({"bd-1": {"status": "closed"}})
    assert path.read_text().splitlines() == [
        '{"id": "bd-1", "status": "closed", "title": "edited"}', '{"id": "bd-2", "status": "open"}']
    assert not list(tmp_path.glob(".*tmp"))
