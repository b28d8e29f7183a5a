"""The submission spool on the broker's host: jobs the CLI made durable before printing an id.

The CLI writes `<id>.job` atomically; the broker takes each file it finds (at start and
every sweep), and unlinks it once the job is committed. A file that does not decode is
moved to `bad/` so it is looked at, not retried forever.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

from luzia import layout, protocol
from luzia.errors import ProtocolError, StateDirError

log = logging.getLogger(__name__)

SUFFIX, TMP_SUFFIX = layout.SPOOL_SUFFIX, layout.SPOOL_TMP_SUFFIX
STALE_TMP = 600.0     # seconds after which a CLI's unfinished `.<id>.tmp` is its leftover


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.bad = path / "bad"

    def claim(self, endpoint: str) -> None:
        """Say in the spool (`.broker`) which submit endpoint this broker serves: a CLI spools
        a job only where the broker it submits to sweeps (client.sweeps_here)."""
        owner = self.path / layout.SPOOL_OWNER
        try:
            if owner.read_text() == endpoint:
                return
        except OSError:
            pass
        tmp = self.path / layout.atomic_tmp_name(layout.SPOOL_OWNER)
        try:
            tmp.write_text(endpoint)
            os.replace(tmp, owner)
        except OSError as exc:
            raise StateDirError(f"cannot write {owner}: {exc.strerror or exc}") from None

    def path_for(self, job_id: str) -> Path:
        return self.path / layout.spool_name(job_id)

    def scan(self, limit: int = 10_000) -> Iterator[tuple[Path, protocol.Submit, int]]:
        """Yield (path, Submit, the file owner's uid: who wrote it) for each spooled job,
        oldest first; set bad files aside."""
        try:
            found = [e for e in os.scandir(self.path) if e.is_file()]
        except OSError as exc:
            log.error("cannot read spool %s: %s", self.path, exc)
            return
        entries = [e for e in found if e.name.endswith(SUFFIX)]
        self._remove_stale_tmp([e for e in found if e.name.endswith(TMP_SUFFIX)])
        entries.sort(key=lambda e: e.stat().st_mtime if os.path.exists(e.path) else 0)
        for entry in entries[:limit]:
            path = Path(entry.path)
            try:
                with open(path, "rb") as file:
                    owner = os.fstat(file.fileno()).st_uid
                    data = file.read()
                msg = protocol.spool_load(data)
            except FileNotFoundError:
                continue  # taken meanwhile (its PUSH arrived and was committed)
            except (OSError, ProtocolError) as exc:
                self.set_aside(path, str(exc))
                continue
            if path.name != layout.spool_name(msg.job.id):
                self.set_aside(path, f"file name does not match job id {msg.job.id}")
                continue
            yield path, msg, owner

    def _remove_stale_tmp(self, entries: list[os.DirEntry]) -> None:
        """A CLI killed before its rename leaves `.<id>.tmp`; it never printed that id."""
        now = time.time()
        for entry in entries:
            try:
                if now - entry.stat().st_mtime > STALE_TMP:
                    os.unlink(entry.path)
                    log.warning("removed %s: a submission its CLI never finished", entry.name)
            except OSError:
                continue      # gone meanwhile, or not ours to remove: harmless either way

    def set_aside(self, path: Path, why: str) -> None:
        try:
            self.bad.mkdir(mode=0o700, exist_ok=True)
            target = self.bad / f"{path.name}.{int(time.time())}"
            os.replace(path, target)
            log.error("bad spool file %s moved to %s: %s", path.name, target, why)
        except OSError as exc:
            log.error("bad spool file %s (%s) could not be moved aside: %s", path, why, exc)

    def remove(self, job_ids: list[str]) -> None:
        """Remove the spool files of these jobs (committed): those that are there (a job
        pushed from another host, or one the CLI did not spool, has none)."""
        if not job_ids:
            return
        try:
            present = set(os.listdir(self.path))
        except OSError as exc:
            log.warning("cannot read spool %s: %s", self.path, exc)
            return
        for name in map(layout.spool_name, job_ids):
            if name in present:
                try:
                    os.unlink(os.path.join(self.path, name))
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    log.warning("cannot remove spool file %s: %s", name, exc)
