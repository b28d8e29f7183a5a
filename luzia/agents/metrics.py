"""The host's load for heartbeats: psutil for CPU and memory, NVML for GPUs when present."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import psutil

log = logging.getLogger(__name__)


@dataclass
class GpuReading:
    memory: float = -1.0      # fraction used, -1: no GPU
    util: float = -1.0
    free_gb: float = -1.0


class Gpus:
    """NVML readings (nvidia-ml-py) if the library loads; a fake reader can be injected."""

    def __init__(self, reader: Callable[[], GpuReading] | None = None) -> None:
        self.reader = reader
        self.nvml = None
        if reader is None:
            try:
                import pynvml  # type: ignore[import-not-found]
                pynvml.nvmlInit()
                self.nvml = pynvml
            except Exception:  # no library or no driver: this host has no usable GPU
                self.nvml = None

    def read(self) -> GpuReading:
        if self.reader is not None:
            return self.reader()
        if self.nvml is None:
            return GpuReading()
        try:
            n = self.nvml.nvmlDeviceGetCount()
            used = total = util = 0.0
            for i in range(n):
                h = self.nvml.nvmlDeviceGetHandleByIndex(i)
                mem = self.nvml.nvmlDeviceGetMemoryInfo(h)
                used += mem.used
                total += mem.total
                util += self.nvml.nvmlDeviceGetUtilizationRates(h).gpu / 100
            if not n or not total:
                return GpuReading()
            return GpuReading(memory=used / total, util=util / n, free_gb=(total - used) / 2**30)
        except Exception as exc:  # a driver hiccup must not stop heartbeats
            log.warning("NVML reading failed: %s", exc)
            return GpuReading()


def load() -> tuple[float, float]:
    """(cpu fraction, memory fraction) of this host."""
    cpu = psutil.cpu_percent(None) / 100
    mem = psutil.virtual_memory().percent / 100
    return min(1.0, max(0.0, cpu)), min(1.0, max(0.0, mem))
