"""The indexed scheduler's buckets (scheduler.py, "Cost"): the pending jobs that are eligible
or not for the same reasons, kept together under one key, and the limits they wait on.
"""

from __future__ import annotations

from luzia.broker.rules import SchedJob


class Bucket:
    """The pending jobs of one `bucket_key`, a heap by seq.

    `entry` is its one valid entry in the ready heap (None when absent); entries it left
    behind there are recognised by identity and dropped when met. `live` counts the jobs
    of `heap` still pending: cancelled ones leave lazily, or in a compaction.
    """

    __slots__ = ("key", "heap", "live", "entry", "parked")

    def __lt__(self, other: Bucket) -> bool:   # only met when two entries share a seq
        return False

    def __init__(self, key: tuple) -> None:
        self.key = key
        self.heap: list[SchedJob] = []
        self.live = 0
        self.entry: tuple | None = None
        self.parked = False


def bucket_key(job: SchedJob) -> tuple:
    """(priority, type, GPU need, user, project, avoided agents, shared workdir)."""
    return (job.priority, job.type, job.gpu_mem_gb, job.user, job.project, job.avoid, job.shared)


def bucket_cls(key: tuple) -> tuple[str, float, frozenset[str]]:
    """The (type, GPU need, avoided agents) of a bucket key: which agents may take its jobs."""
    return key[1], key[2], key[5]


def limits(job: SchedJob) -> list[tuple[str, str]]:
    """The limits `job` is held by: its user's, its project's, its shared workdir's."""
    return [("user", job.user), ("project", job.project)] + (
        [("shared", job.shared)] if job.shared else [])


def discard(index: dict[str, set[str]], key: str, job_id: str) -> None:
    """`job_id` out of `index[key]`, and the key out once its set is empty."""
    ids = index.get(key)
    if ids is not None:
        ids.discard(job_id)
        if not ids:
            del index[key]
