"""GPU memory as a credit, end to end: a real broker and agent, the agent's NVML replaced by
a fake library reading figures from a file ($LUZIA_FAKE_NVML) that the test rewrites."""

from __future__ import annotations

import json

from tests.fleet import PY, LocalFleet
from tests.helpers import wait_for

CONFIG = f"""
[broker]
heartbeat_interval = 0.1
[scheduler]
cpu_ceiling = 1.0
memory_ceiling = 1.0
per_user = false
max_per_project = 0
[scheduler.gpu_mem_gb]
code = 16
[agent]
slots = 3
capabilities = ["code", "text"]
runner = "subprocess"
command = ["{PY}", "-c", "import sys, time; time.sleep(float(sys.argv[1]))", "{{task}}"]
"""


def set_gpus(path, *used_gb: float) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([{"total_gb": 24, "used_gb": u, "util": 40} for u in used_gb]))
    tmp.replace(path)


def test_a_gpu_type_waits_for_free_gpu_memory_and_reserves_it(short_tmp):
    nvml = short_tmp / "nvml.json"
    set_gpus(nvml, 12)                                   # 12 of 24 GB free
    fleet = LocalFleet(short_tmp / "g", CONFIG, env={"LUZIA_FAKE_NVML": str(nvml)})
    try:
        fleet.start_broker()
        fleet.start_agent("gpu1")
        wait_for(lambda: "gpu1" in fleet.live_agents(), 15)
        agent = wait_for(lambda: next((a for a in fleet.agents() if a["gpu_total_gb"] > 0), None), 10)
        assert agent["gpu_free_gb"] == 12 and agent["gpu_total_gb"] == 24
        assert agent["gpu_memory"] == 0.5 and agent["gpu_util"] == 0.4

        big = fleet.submit("demo", "30", "--type", "code")      # needs 16 GB: not free
        small = fleet.submit("demo", "0", "--type", "text")     # needs none: takes a slot
        wait_for(lambda: fleet.state(small) == "completed", 15)
        assert fleet.state(big) == "pending"
        assert "gpu1 has 12 GB GPU free, needs 16 GB" in fleet.job(big)["why"]

        set_gpus(nvml, 0)                                    # the GPU is free now
        wait_for(lambda: fleet.state(big) == "running", 15)
        second = fleet.submit("demo", "0", "--type", "code")
        # 24 GB measured free, but 16 are the running job's: the agent offers 8 (slots are free)
        wait_for(lambda: "gpu1 has 8 GB GPU free, needs 16 GB" in fleet.job(second)["why"], 10)
        assert [a["gpu_reserved_gb"] for a in fleet.agents()] == [16]

        fleet.cli("cancel", big)                             # its memory is released with it
        wait_for(lambda: fleet.state(second) == "completed", 20)
        assert fleet.job(second)["host"] == "gpu1"
    finally:
        fleet.close()
