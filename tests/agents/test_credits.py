"""Adaptive credits with an injected GPU reading (no GPUs here): the rule, the agent's
heartbeats, and a real broker scheduling with the new count."""

from __future__ import annotations

import zmq

from luzia import config, protocol
from luzia.agents import processes
from luzia.agents.credits import AdaptiveSlots
from luzia.agents.metrics import GpuReading, Gpus
from luzia.agents.worker import Worker
from tests.agents.fakebroker import FakeBroker
from tests.broker.harness import make_broker
from tests.helpers import wait_for

IDLE, BUSY, FULL = GpuReading(0.5, 0.2, 8.0), GpuReading(0.5, 0.9, 8.0), GpuReading(0.97, 0.2, 0.5)
ADAPTIVE = "[adaptive]\nenabled = true\nmax_slots = 3\nbeats = 2\n"


def cfg_for(home, text: str) -> config.Config:
    home.mkdir(exist_ok=True)
    (home / "luzia.toml").write_text(f'home = "{home}"\n[broker]\nheartbeat_interval = 0.05\n'
                                     f'[agent]\nslots = 1\nrunner = "subprocess"\n{text}')
    return config.load(env={"LUZIA_CONFIG": str(home / "luzia.toml")})


def test_slots_rise_while_gpus_idle_and_fall_when_memory_is_full(short_tmp):
    slots = AdaptiveSlots(cfg_for(short_tmp / "h", ADAPTIVE))
    seen = [slots.update(r) for r in [IDLE] * 8]
    assert seen == [1, 2, 2, 2, 3, 3, 3, 3]         # one more per 2 low beats, 2 quiet beats, max 3
    assert [slots.update(r) for r in [BUSY] * 3] == [3, 3, 3]
    assert [slots.update(r) for r in [FULL] * 4] == [2, 2, 2, 1]   # down, pause, down to min 1
    assert slots.update(GpuReading()) == 1                          # no GPU reading: no change


def test_off_by_default(short_tmp):
    slots = AdaptiveSlots(cfg_for(short_tmp / "h", ""))
    assert {slots.update(r) for r in [IDLE] * 30 + [FULL] * 5} == {1}


def test_agent_heartbeats_carry_its_credits(short_tmp):
    cfg = cfg_for(short_tmp / "h", ADAPTIVE)
    reading = [IDLE]
    broker = FakeBroker(cfg)
    worker = Worker(cfg, ctx=zmq.Context(), gpus=Gpus(reader=lambda: reading[0]))
    try:
        assert broker.recv(worker, protocol.Hello).slots == 1
        broker.send(protocol.Welcome(heartbeat_interval=0.05))
        broker.recv(worker, protocol.Heartbeat, where=lambda m: m.slots == 3)
        reading[0] = FULL
        broker.recv(worker, protocol.Heartbeat, where=lambda m: m.slots == 1)
    finally:
        worker.close()
        worker.ctx.term()
        broker.close()


def test_broker_schedules_with_the_credits_the_agent_reports(short_tmp):
    (short_tmp / "h").mkdir()
    broker = make_broker(short_tmp / "h", f'[agent]\nslots = 1\nrunner = "subprocess"\n'
                         f'command = ["sleep", "30"]\n{ADAPTIVE}'
                         '[scheduler]\nper_user = false\nmax_per_project = 10\n'
                         'cpu_ceiling = 1.0\nmemory_ceiling = 1.0\n')
    reading = [BUSY]
    worker = Worker(broker.cfg, ctx=zmq.Context(), gpus=Gpus(reader=lambda: reading[0]))

    def turn_until(predicate, timeout=15.0):
        def step():
            broker.turn(0.005)
            worker.turn(0.005)
            return predicate()
        return wait_for(step, timeout)

    def agent():
        agents = broker.model.fleet.by_name
        return agents.get(worker.name)
    try:
        turn_until(lambda: agent() is not None and agent().slots == 1)
        from luzia.client import build
        for i in range(3):
            broker.submit(build("demo", f"job {i}", cfg=broker.cfg))
        turn_until(lambda: len(worker.jobs) == 1)        # one credit: one job
        reading[0] = IDLE                                 # the GPUs have room: credits grow
        turn_until(lambda: len(worker.jobs) == 3)
        assert agent().slots == 3
    finally:
        for run in list(worker.jobs.values()):          # the sleepers this test started
            wait_for(run.dir.pid, 10)
            processes.signal_job(run.dir, processes.KILL)
        worker.close()
        worker.ctx.term()
        broker.close()
