"""The GPU reading: the real NVML code path, fed by the fake library ($LUZIA_FAKE_NVML)."""

from __future__ import annotations

import json

from luzia.agents import metrics


def test_fake_nvml_goes_through_the_real_reading_code(tmp_path, monkeypatch):
    path = tmp_path / "nvml.json"
    path.write_text(json.dumps([{"total_gb": 24, "used_gb": 4, "util": 30},
                                {"total_gb": 8, "used_gb": 8, "util": 90}]))
    monkeypatch.setenv("LUZIA_FAKE_NVML", str(path))
    gpus = metrics.Gpus()
    assert isinstance(gpus.nvml, metrics.FakeNvml)
    reading = gpus.read()
    assert (reading.memory, reading.util, reading.free_gb) == (12 / 32, 0.6, 20.0)
    path.write_text("not json")               # a bad reading: no GPU figures, heartbeats go on
    assert gpus.read() == metrics.GpuReading()


def test_no_nvml_library_means_no_gpu(monkeypatch):
    monkeypatch.delenv("LUZIA_FAKE_NVML", raising=False)
    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)   # import fails
    assert metrics.Gpus().read() == metrics.GpuReading()
