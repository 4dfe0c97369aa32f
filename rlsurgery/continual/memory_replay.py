"""Memory replay: a store of every old task's transitions, mixed into each replay batch at a ratio.

Rolnick et al. 2019 (CLEAR), https://arxiv.org/abs/1811.11682; Isele & Cosgun 2018 (selective
experience replay), https://arxiv.org/abs/1802.10269. At each task switch ``per_task`` transitions
of the finished task are drawn uniformly from the replay buffer (a reservoir sample of the task's
stream when the buffer holds the whole task) and kept; while later tasks train, each sampled batch of
B transitions has its first m = round(ρ·B) rows replaced by transitions drawn uniformly from the
store (all old tasks pooled)::

    batch = [m memory transitions ; B − m transitions of the current task]

Memory rows are one-step transitions (discount γ, loss weight 1). The store is part of the surgery's
state, so a model saved mid-sequence keeps it. On the off-policy agents (DQN family, SAC, TD3);
prioritized replay's per-sample priorities would be written to the wrong rows, so the two are refused
together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.catalog import register
from rlsurgery.continual.anchors import FIELDS, TaskMemorySurgery
from rlsurgery.core.params import param
from rlsurgery.core.surgery import Attachment


@dataclass
class MemoryReplayParams:
    per_task: int = param(1_000, "transitions kept of each finished task", ge=1)
    ratio: float = param(0.5, "ρ: fraction of every batch drawn from the memory of old tasks", ge=0.0, le=1.0)


def mixed_rows(batch_size: int, ratio: float, stored: int) -> int:
    """m = round(ρ·B), none while the memory is empty."""
    return 0 if stored == 0 else round(ratio * batch_size)


@register(proof="tests/continual/test_continual.py::test_memory_replay_mixes_old_transitions_at_the_ratio")
class MemoryReplay(TaskMemorySurgery):
    """Keep transitions of every finished task and mix them into each replay batch."""

    key = "memory_replay"
    attaches_to = (Attachment.REPLAY, Attachment.SCHEDULE)
    stages = ("augment",)
    stage_order = 10  # before augmentations of the observations: they see the mixed batch
    conflicts = ("prioritized_replay",)
    conflict_reason = "the priorities of the replaced rows would be updated for the current task's samples"
    Params = MemoryReplayParams
    params: MemoryReplayParams

    def augment(self, agent: BaseAlgorithm, batch: Any) -> None:
        state = self.state(agent)
        stored = len(state.task_of)
        m = mixed_rows(len(batch.rewards), self.params.ratio, stored)
        if m == 0:
            return
        chosen = np.random.randint(stored, size=m)  # SB3's replay sampling draws from NumPy's global RNG too
        device = batch.rewards.device
        for name in FIELDS:
            current = getattr(batch, name)
            rows = (
                th.as_tensor(state.memory[name][chosen], device=device)
                .to(current.dtype)
                .reshape(m, *current.shape[1:])
            )
            setattr(batch, name, th.cat([rows, current[m:]]))
        if isinstance(batch.discounts, th.Tensor):
            batch.discounts = batch.discounts.clone()
            batch.discounts[:m] = agent.gamma
        if batch.weights is not None:
            batch.weights = batch.weights.clone()
            batch.weights[:m] = 1.0
