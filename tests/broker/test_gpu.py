"""GPU memory as a credit: a job's need, and what an agent offers once jobs reserve memory."""

from __future__ import annotations

from luzia.broker import gpu
from luzia.config import SchedulerConfig


def test_need_is_the_types_or_the_jobs_larger_figure():
    cfg = SchedulerConfig(gpu_mem_gb={"code": 16.0})
    assert gpu.need(cfg, "code", {}) == 16
    assert gpu.need(cfg, "code", {"gpu_mem_gb": 40}) == 40
    assert gpu.need(cfg, "text", {"gpu_mem_gb": 4.5}) == 4.5
    for bad in ("16", True, -3, float("nan"), None):
        assert gpu.need(cfg, "text", {"gpu_mem_gb": bad}) == 0


def test_offer_counts_reserved_memory_once():
    total = gpu.total_gb(0.25, 18.0)
    assert total == 24
    assert gpu.offer(18.0, total, []) == 18          # nothing placed: what is measured
    assert gpu.offer(24.0, 24.0, [16.0]) == 8        # placed, not yet allocated
    assert gpu.offer(8.0, 24.0, [16.0]) == 8         # allocated: not counted twice
    assert gpu.offer(2.0, 24.0, [16.0]) == 2         # someone else uses memory too
    assert gpu.offer(24.0, 24.0, [16.0, 16.0]) == 0
    assert gpu.offer(-1.0, -1.0, [16.0]) == -1       # no GPU reported
    assert gpu.total_gb(1.0, 0.0) == -1 and gpu.total_gb(-1, -1) == -1
