"""GPU memory as a credit: what a job needs, and what an agent can still offer.

A job needs `scheduler.gpu_mem_gb[its type]` GB of free GPU memory, or more if its metadata
says `gpu_mem_gb`. An agent offers what its last heartbeat measured free, but never more
than its total less what the jobs placed on it need: a job just assigned has not allocated
its memory yet, and the next beats would otherwise offer that memory a second time. Once
the job has allocated it, the measurement is the smaller figure and nothing is counted twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from luzia.config import SchedulerConfig


def need(cfg: SchedulerConfig, job_type: str, metadata: Any) -> float:
    """GB of free GPU memory a job needs on its host (0: none)."""
    if not metadata:        # most jobs, and a flood of submissions: only the type's default
        return max(cfg.gpu_mem_gb.get(job_type, 0.0), 0.0)
    asked = metadata.get("gpu_mem_gb", 0) if isinstance(metadata, dict) else 0
    asked = float(asked) if isinstance(asked, (int, float)) and not isinstance(asked, bool) else 0.0
    return max(cfg.gpu_mem_gb.get(job_type, 0.0), asked if math.isfinite(asked) else 0.0, 0.0)


def total_gb(used_fraction: float, free_gb: float) -> float:
    """The host's GPU memory from a heartbeat's (fraction used, GB free); -1 if unknown."""
    if free_gb < 0 or not 0 <= used_fraction < 1:
        return -1.0
    return free_gb / (1 - used_fraction)


def offer(free_gb: float, total: float, needs: Iterable[float]) -> float:
    """Free GPU memory an agent offers to new work (-1: it reports none)."""
    if free_gb < 0 or total < 0:
        return free_gb
    return max(0.0, min(free_gb, total - math.fsum(needs)))
