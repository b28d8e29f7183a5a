"""The host's load for heartbeats: psutil for CPU and memory, NVML for GPUs when present."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import psutil

log = logging.getLogger(__name__)


@dataclass
class GpuReading:
    memory: float = -1.0      # fraction used, -1: no GPU
    util: float = -1.0
    free_gb: float = -1.0


class Gpus:
    """NVML readings (nvidia-ml-py) if the library loads; a fake reader can be injected, and
    $LUZIA_FAKE_NVML stands a fake NVML library in for the real one (see FakeNvml)."""

    def __init__(self, reader: Callable[[], GpuReading] | None = None) -> None:
        self.reader = reader
        self.nvml = None
        if reader is None:
            self.nvml = _load_nvml()

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


def _load_nvml():
    """The NVML library, initialised; None when there is none (no package, no driver)."""
    fake = os.environ.get("LUZIA_FAKE_NVML")
    if fake:
        log.warning("GPU figures come from %s ($LUZIA_FAKE_NVML), not from NVML", fake)
        return FakeNvml(fake)
    try:
        import pynvml
        pynvml.nvmlInit()
        return pynvml
    except Exception:  # no library or no driver: this host has no usable GPU
        return None


class FakeNvml:
    """The part of pynvml that Gpus.read uses, answering from a JSON file read at every
    reading: `[{"total_gb": 24, "used_gb": 4, "util": 30}, ...]`, one entry per GPU (util
    in percent). For tests and demos on hosts without GPUs; the reading code stays the real one."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.devices: list[dict] = []

    def nvmlDeviceGetCount(self) -> int:
        with open(self.path) as f:
            self.devices = json.load(f)
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> dict:
        return self.devices[index]

    def nvmlDeviceGetMemoryInfo(self, device: dict) -> SimpleNamespace:
        return SimpleNamespace(total=device["total_gb"] * 2**30, used=device["used_gb"] * 2**30)

    def nvmlDeviceGetUtilizationRates(self, device: dict) -> SimpleNamespace:
        return SimpleNamespace(gpu=device.get("util", 0))


def load() -> tuple[float, float]:
    """(cpu fraction, memory fraction) of this host."""
    cpu = psutil.cpu_percent(None) / 100
    mem = psutil.virtual_memory().percent / 100
    return min(1.0, max(0.0, cpu)), min(1.0, max(0.0, mem))
