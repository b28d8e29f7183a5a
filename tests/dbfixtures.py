"""Job databases for tests: the recorded fixtures of earlier releases (tests/fixtures/), and
ways to damage a copy the way a bad disk does.

A fixture is only ever copied, never opened in place: even a read-only SQLite open of a
WAL database writes -shm/-wal files beside it.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
SCHEMA1 = FIXTURES / "luzia-schema1.db"

# what tests/fixtures/make_fixture.py records: the five jobs, by task text
COMPLETED, FAILED, WITH_METADATA = "fixture completed one", "please FAIL_DEMO now", "fixture with metadata"
CRITICAL, DEPENDS = "fixture left pending", "fixture depends"
STATES = {COMPLETED: "completed", FAILED: "failed", WITH_METADATA: "completed",
          CRITICAL: "pending", DEPENDS: "pending"}


def recorded() -> list[Path]:
    """Every recorded fixture, oldest schema first."""
    return sorted(FIXTURES.glob("luzia-schema*.db"),
                  key=lambda p: int(p.stem.removeprefix("luzia-schema")))


def copy_fixture(src: Path, dest: Path) -> Path:
    """A private copy (copyfile: not the fixture's read-only mode bits)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest


def _read(path: Path, sql: str, *args: object) -> list[tuple]:
    """Rows of `sql`, read from a scratch copy so that the file itself is not opened."""
    scratch = Path(f"{path}.scratch")
    shutil.copyfile(path, scratch)
    try:
        db = sqlite3.connect(scratch)
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()
    finally:
        for leftover in scratch.parent.glob(scratch.name + "*"):
            leftover.unlink()


def submitter_of(fixture: Path, task: str) -> str | None:
    """Who submitted the job of `task` as the recording release kept it (None: a release
    before the column, or before issue 17 item 7 filled it)."""
    if "submitter" not in {row[1] for row in _read(fixture, "PRAGMA table_info(jobs)")}:
        return None
    return _read(fixture, "SELECT submitter FROM jobs WHERE task=?", task)[0][0]


def _page_of(path: Path, name: str) -> tuple[int, int]:
    """(page number, page size) of the root page of table or index `name`."""
    [(page,)] = _read(path, "SELECT rootpage FROM sqlite_master WHERE name=?", name)
    [(size,)] = _read(path, "PRAGMA page_size")
    return page, size


def _rewrite_page(path: Path, name: str, change) -> None:
    page, size = _page_of(path, name)
    with open(path, "r+b") as f:
        f.seek((page - 1) * size)
        data = bytearray(f.read(size))
        change(data)
        f.seek((page - 1) * size)
        f.write(data)


def damage_index_key(path: Path, index: str = "sqlite_autoindex_jobs_1", last: bool = False) -> None:
    """One bad cell in an index: a key (the middle one, or the last) claims 20 more bytes
    than it holds. quick_check (structure only) passes it; integrity_check and every lookup
    that compares with it fail with "database disk image is malformed" — one bad page found
    only when read. The middle key of the job-id index is met by every lookup by id; the
    last key of `jobs_seq` by the broker's start (MAX(seq))."""
    def change(data: bytearray) -> None:
        cells = int.from_bytes(data[3:5], "big")
        cell = cells - 1 if last else cells // 2
        offset = int.from_bytes(data[8 + 2 * cell: 10 + 2 * cell], "big")
        data[offset + 2] += 40          # [payload size][header size][serial type of the key]
    _rewrite_page(path, index, change)


def damage_id_index(path: Path) -> None:
    damage_index_key(path)


def zero_page(path: Path, name: str) -> None:
    """A page of zeros where `name`'s root page was (a torn write, a bad sector)."""
    _rewrite_page(path, name, lambda data: data.__setitem__(slice(None), bytes(len(data))))


def garble_text(path: Path, text: str) -> None:
    """Overwrite the first stored copy of `text` with bytes that are not UTF-8 (the row
    keeps its shape: SQLite's checks pass it, reading it back fails)."""
    raw = bytearray(path.read_bytes())
    at = raw.index(text.encode())
    raw[at:at + 4] = b"\xff\xfe\xff\xfe"
    path.write_bytes(bytes(raw))
