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

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import param
from rlsurgery.core.surgery import Attachment, Surgery, reject_dict_observations
from rlsurgery.runtime.tasks import TaskSwitch

#: the transition fields kept, as the replay buffer names them
FIELDS = ("observations", "actions", "rewards", "next_observations", "dones")


@dataclass
class MemoryReplayParams:
    per_task: int = param(1_000, "transitions kept of each finished task", ge=1)
    ratio: float = param(0.5, "ρ: fraction of every batch drawn from the memory of old tasks", ge=0.0, le=1.0)


@dataclass
class MemoryState:
    memory: dict[str, np.ndarray] = field(default_factory=dict)
    """the kept transitions of all old tasks, by field (first axis: transitions)"""
    task_of: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """the task each kept transition comes from"""


def buffer_transitions(agent: BaseAlgorithm, n: int, key: str) -> dict[str, np.ndarray]:
    """``n`` transitions drawn uniformly (without replacement) from the agent's replay buffer."""
    buffer = agent.replay_buffer
    size = buffer.size() * buffer.n_envs
    if size == 0:
        raise IncompatibleSurgeryError(f"{key}: the replay buffer is empty at the task switch")
    flat = np.random.default_rng(int(agent.num_timesteps)).choice(size, size=min(n, size), replace=False)
    rows, envs = flat // buffer.n_envs, flat % buffer.n_envs
    if buffer.optimize_memory_usage:
        next_obs = buffer.observations[(rows + 1) % buffer.buffer_size, envs]
    else:
        next_obs = buffer.next_observations[rows, envs]
    dones = buffer.dones[rows, envs] * (1 - buffer.timeouts[rows, envs])  # time limits bootstrap, as in SB3
    return {
        "observations": buffer.observations[rows, envs],
        "actions": buffer.actions[rows, envs],
        "rewards": buffer.rewards[rows, envs].reshape(-1, 1),
        "next_observations": next_obs,
        "dones": dones.reshape(-1, 1),
    }


def mixed_rows(batch_size: int, ratio: float, stored: int) -> int:
    """m = round(ρ·B), none while the memory is empty."""
    return 0 if stored == 0 else round(ratio * batch_size)


@register(proof="tests/continual/test_continual.py::test_memory_replay_mixes_old_transitions_at_the_ratio")
class MemoryReplay(Surgery):
    """Keep transitions of every finished task and mix them into each replay batch."""

    key = "memory_replay"
    attaches_to = (Attachment.REPLAY, Attachment.SCHEDULE)
    families = ("dqn", "sac", "td3")
    stages = ("augment",)
    stage_order = 10  # before augmentations of the observations: they see the mixed batch
    conflicts = ("prioritized_replay",)
    conflict_reason = "the priorities of the replaced rows would be updated for the current task's samples"
    Params = MemoryReplayParams
    params: MemoryReplayParams
    State: ClassVar[type | None] = MemoryState

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        reject_dict_observations(self.key, observation_space)

    def on_task_switch(self, agent: BaseAlgorithm, switch: TaskSwitch) -> None:
        kept = buffer_transitions(agent, self.params.per_task, self.key)
        state = self.state(agent)
        n = len(kept["observations"])
        state.memory = {
            name: np.concatenate([state.memory[name], kept[name]]) if state.memory else kept[name]
            for name in FIELDS
        }
        state.task_of = np.concatenate([state.task_of, np.full(n, switch.ended, dtype=np.int64)])

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
