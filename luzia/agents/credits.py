"""Adaptive credits (seed 003's hand-tuned per-host semaphores, automated; off by default).

An agent with `[adaptive] enabled = true` starts with `agent.slots` credits, adds one when
its GPUs stayed under `util_below` utilisation for `beats` heartbeats in a row (up to
`max_slots`), and takes one away when GPU memory passes `memory_above` (down to
`min_slots`). After any change it waits `beats` heartbeats before the next, so the running
jobs' memory shows up before it lowers again. A host without GPU readings keeps its slots.
The broker learns the count from the heartbeat's `slots` field.
"""

from __future__ import annotations

import logging

from luzia.agents.metrics import GpuReading
from luzia.config import Config

log = logging.getLogger(__name__)


class AdaptiveSlots:
    """This agent's credits, updated once per heartbeat from the GPU reading."""

    def __init__(self, cfg: Config) -> None:
        self.a = cfg.adaptive
        self.slots = cfg.agent.slots
        self.low_beats = 0        # consecutive beats under the utilisation threshold
        self.quiet = 0            # beats left before another change

    @property
    def enabled(self) -> bool:
        return self.a.enabled

    def update(self, gpu: GpuReading) -> int:
        """The credits after this beat's reading."""
        if not self.a.enabled or gpu.util < 0 or gpu.memory < 0:
            return self.slots
        self.low_beats = self.low_beats + 1 if gpu.util < self.a.util_below else 0
        if self.quiet > 0:
            self.quiet -= 1
            return self.slots
        if gpu.memory > self.a.memory_above:
            if self.slots > self.a.min_slots:
                self._set(self.slots - 1, f"GPU memory at {gpu.memory:.0%}")
        elif self.low_beats >= self.a.beats and self.slots < self.a.max_slots:
            self._set(self.slots + 1, f"GPU utilisation under {self.a.util_below:.0%} "
                                      f"for {self.low_beats} beats")
        return self.slots

    def _set(self, slots: int, why: str) -> None:
        log.info("credits %d -> %d: %s", self.slots, slots, why)
        self.slots, self.low_beats, self.quiet = slots, 0, self.a.beats
