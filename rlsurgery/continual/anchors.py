"""What the continual surgeries share: the parameters each loss role trains, and old-task data.

``aux_loss`` is called per loss role (``q`` on the DQN family; ``policy`` and ``value`` on PPO/A2C,
which share one loss; ``actor`` and ``critic`` on SAC/TD3); :func:`role_parameters` gives the
parameters that role's optimizer steps, by their names in the policy, so a penalty on the role adds
to the loss of the parameters it moves (and once per PPO loss: the ``value`` role has none of its own).
:func:`old_task_samples` draws observations and actions of the finished task from the agent's replay
buffer or its last rollout, at the switch, before the buffer is emptied; :func:`buffer_transitions`
whole transitions, which :class:`MemoryState` keeps per task (memory replay, GEM).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.core.batch import Batch
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.surgery import Surgery, reject_dict_observations
from rlsurgery.nets.step_hooks import optimizers_by_role

#: aux_loss role -> the optimizer role whose parameters it covers (None: covered by another role)
OPTIMIZER_OF_ROLE = {"q": "policy", "policy": "policy", "value": None, "actor": "actor", "critic": "critic"}


def role_parameters(agent: BaseAlgorithm, role: str) -> list[tuple[str, th.nn.Parameter]]:
    """(name in the policy, parameter) of what the loss of ``role`` trains."""
    optimizer_role = OPTIMIZER_OF_ROLE.get(role)
    if optimizer_role is None:
        return []
    owned = {id(p) for g in optimizers_by_role(agent)[optimizer_role].param_groups for p in g["params"]}
    return [(name, p) for name, p in agent.policy.named_parameters() if id(p) in owned]


def old_task_samples(agent: BaseAlgorithm, n: int, key: str) -> tuple[th.Tensor, th.Tensor]:
    """Up to ``n`` (observations, actions) of the task just trained, as the policy takes them."""
    generator = np.random.default_rng(int(agent.num_timesteps))
    buffer = getattr(agent, "replay_buffer", None)
    if buffer is not None:
        size = buffer.size() * buffer.n_envs
        if size == 0:
            raise IncompatibleSurgeryError(f"{key}: the replay buffer is empty at the task switch")
        flat = generator.choice(size, size=min(n, size), replace=False)
        rows, envs = flat // buffer.n_envs, flat % buffer.n_envs
        obs, actions = buffer.observations[rows, envs], buffer.actions[rows, envs]
    else:
        buffer = agent.rollout_buffer
        obs = buffer.observations.reshape(-1, *buffer.obs_shape)
        actions = buffer.actions.reshape(-1, buffer.action_dim)
        chosen = generator.choice(len(obs), size=min(n, len(obs)), replace=False)
        obs, actions = obs[chosen], actions[chosen]
    device = agent.device
    return th.as_tensor(obs, device=device).float(), th.as_tensor(actions, device=device)


#: the transition fields kept, as the replay buffer names them
FIELDS = ("observations", "actions", "rewards", "next_observations", "dones")


@dataclass
class MemoryState:
    """Transitions kept of every finished task (the state of the surgeries that replay old tasks)."""

    memory: dict[str, np.ndarray] = field(default_factory=dict)
    """the kept transitions of all old tasks, by field (first axis: transitions)"""
    task_of: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """the task each kept transition comes from"""

    def add(self, transitions: dict[str, np.ndarray], task: int) -> None:
        """Keep ``transitions`` (by field) of task ``task``."""
        n = len(transitions["observations"])
        self.memory = {
            name: np.concatenate([self.memory[name], transitions[name]]) if self.memory else transitions[name]
            for name in FIELDS
        }
        self.task_of = np.concatenate([self.task_of, np.full(n, task, dtype=np.int64)])

    def batch(self, rows: np.ndarray, agent: BaseAlgorithm) -> Batch:
        """The kept transitions ``rows`` as a one-step replay :class:`~rlsurgery.core.batch.Batch`."""
        device = agent.device
        fields = {name: th.as_tensor(self.memory[name][rows], device=device) for name in FIELDS}
        for name in ("observations", "next_observations", "rewards", "dones"):
            fields[name] = fields[name].float()
        return Batch(**fields, discounts=agent.gamma)


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


class TaskMemorySurgery(Surgery):
    """The base of the surgeries that keep ``params.per_task`` transitions of every finished task (in a
    :class:`MemoryState`) on the off-policy agents, whose replay buffer holds them at the switch."""

    families: ClassVar[tuple[str, ...]] = ("dqn", "sac", "td3")
    State: ClassVar[type | None] = MemoryState
    params: Any

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        reject_dict_observations(self.key, observation_space)

    def on_task_switch(self, agent: BaseAlgorithm, switch: Any) -> None:
        """Keep transitions of the finished task."""
        self.state(agent).add(buffer_transitions(agent, self.params.per_task, self.key), switch.ended)
