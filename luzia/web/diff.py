"""What a job changed: the diff shown on its page.

From the broker when the job object carries one (`diff`: text); otherwise from the git
snapshots the job's wrapper left in its work directory (refs/luzia/<id>/before and
/after, luzia/snapshots.py), when that directory is on this host, as `luzia diff` does.
git runs in a worker thread, so a large repository never stalls the other pages.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

from luzia import snapshots
from luzia.states import TERMINAL_NAMES

MAX_BYTES = 256 * 1024        # a page shows at most this much of a diff


@dataclass(frozen=True)
class Diff:
    text: str
    stat: str
    cut: bool                 # longer than MAX_BYTES; the rest is left out
    source: str               # "broker" or the repository it was read from


async def job_diff(job: dict[str, Any]) -> Diff | None:
    given = job.get("diff")
    if isinstance(given, str) and given:
        data = given.encode()
        return Diff(given[:MAX_BYTES], "", len(data) > MAX_BYTES, "broker")
    workdir = job.get("workdir")
    if job.get("state") not in TERMINAL_NAMES or not isinstance(workdir, str) or \
            not workdir or not os.path.isdir(workdir):
        return None
    return await asyncio.to_thread(_from_snapshots, str(job.get("id")), workdir)


def _from_snapshots(job_id: str, workdir: str) -> Diff | None:
    try:
        repo = snapshots.toplevel(workdir)
        if repo is None:
            return None
        before = snapshots.resolve(repo, job_id, "before")
        after = snapshots.resolve(repo, job_id, "after")
        if not before or not after:
            return None
        stat = snapshots.git(repo, "diff", "--stat", "--no-color", before, after).stdout
        out = snapshots.git(repo, "diff", "--no-color", "--no-ext-diff", before, after).stdout
    except snapshots.SnapshotError:
        return None
    return Diff(out[:MAX_BYTES].decode(errors="replace"), stat.decode(errors="replace"),
                len(out) > MAX_BYTES, repo)
