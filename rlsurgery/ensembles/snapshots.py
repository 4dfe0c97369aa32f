"""Ensembles of the agent's own past weights: the plumbing of snapshot and fast geometric ensembling.

A :class:`SnapshotSurgery` sets a cyclic learning-rate factor f(t) and, at the points of each cycle
that :meth:`~SnapshotSurgery.collection_count` marks, stores a copy of the Q network in a bank
on the policy (``policy.snapshot_bank``; a :class:`SnapshotBank` of frozen copies, or a
:class:`AveragedBank`, a running average of the weights through ``torch.optim.swa_utils``).
Deterministic actions (evaluation, ``predict(deterministic=True)``) are the argmax of the
bank's Q-values — the snapshots' mean, or the averaged weights' values — once it holds one;
exploration while collecting stays ε-greedy on the network being trained (the surgeries fill the
agent's ``act`` stage to do so, which takes one surgery: they do not combine with another surgery
that chooses actions, such as ``boltzmann_exploration`` or ``bagging``). The bank is a
submodule of the policy of a size fixed at build time, so ``save``/``load`` keep it (and which
slots are filled) with the weights.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn
from torch.optim.swa_utils import AveragedModel

from rlsurgery.core.surgery import Attachment, Surgery, require_discrete_actions
from rlsurgery.nets.step_hooks import add_lr_factor
from rlsurgery.runtime.acting import env_actions


def frozen_copy(net: nn.Module) -> nn.Module:
    """A deep copy of ``net`` that no optimizer trains."""
    twin = copy.deepcopy(net)
    twin.requires_grad_(False)
    return twin


class SnapshotBank(nn.Module):
    """``capacity`` frozen copies of a network; storing into a full bank replaces the oldest.

    :param net: the network whose weights the slots take
    :param capacity: number of slots
    """

    def __init__(self, net: nn.Module, capacity: int) -> None:
        super().__init__()
        self.slots = nn.ModuleList(frozen_copy(net) for _ in range(capacity))
        self.register_buffer("taken_at", th.full((capacity,), -1, dtype=th.long))
        """the env step at which each slot was filled (-1: empty)"""
        self.register_buffer("order", th.full((capacity,), -1, dtype=th.long))
        """when each slot was filled, counted over the bank's life (a later ``learn`` restarts steps)"""

    @property
    def filled(self) -> list[int]:
        """The filled slots, oldest first."""
        order = self.order.tolist()
        return sorted((k for k, o in enumerate(order) if o >= 0), key=lambda k: order[k])

    def store(self, net: nn.Module, step: int) -> None:
        """Copy ``net``'s weights into an empty slot, or over the oldest one."""
        order = self.order.tolist()
        slot = order.index(-1) if -1 in order else int(np.argmin(order))
        self.slots[slot].load_state_dict(net.state_dict())
        self.taken_at[slot] = step
        self.order[slot] = max(order) + 1

    def values(self, obs: th.Tensor) -> th.Tensor:
        """The mean of the filled slots' outputs."""
        return th.stack([self.slots[k](obs) for k in self.filled]).mean(dim=0)


class AveragedBank(nn.Module):
    """A running average of a network's weights (stochastic weight averaging).

    ``torch.optim.swa_utils.AveragedModel`` does the averaging (buffers included, so running
    statistics are averaged too rather than recomputed by ``update_bn``).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.average = AveragedModel(net, use_buffers=True)
        self.average.requires_grad_(False)
        self.register_buffer("taken_at", th.full((1,), -1, dtype=th.long))
        """the env step of the latest weights averaged in (-1: none yet)"""

    @property
    def filled(self) -> list[int]:
        return [0] if int(self.average.n_averaged) > 0 else []

    def store(self, net: nn.Module, step: int) -> None:
        """Average ``net``'s current weights in: w̄ ← w̄ + (w − w̄) / (n + 1)."""
        self.average.update_parameters(net)
        self.taken_at[0] = step

    def values(self, obs: th.Tensor) -> th.Tensor:
        return self.average(obs)


class SnapshotSurgery(Surgery):
    """Shared plumbing: a cyclic learning-rate factor, a bank filled at collection points, acting with it."""

    attaches_to = (Attachment.NETWORK, Attachment.SCHEDULE)
    families = ("dqn",)
    stages = ("on_step", "act")
    build_order = 95  # after every network surgery: the bank copies the final Q network
    sb3_representable = False  # the bank is an extra module of the policy
    #: surgeries that change the Q network's shapes while training: the bank's copies would no longer fit
    conflicts = ("network_morphism", "darts", "enas")
    conflict_reason = "the bank holds copies of the Q network, whose shapes must not change while it trains"

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        require_discrete_actions(self.key, action_space)

    # --------------------------------------------------------------- to define
    def lr_factor(self, agent: BaseAlgorithm, step: int) -> float:
        """The learning-rate factor at env step ``step``."""
        raise NotImplementedError(f"{type(self).__name__} must define lr_factor()")

    def collection_count(self, agent: BaseAlgorithm, step: int) -> int:
        """How many collection points lie in (0, step]."""
        raise NotImplementedError(f"{type(self).__name__} must define collection_count()")

    def make_bank(self, net: nn.Module) -> nn.Module:
        """The bank for ``net`` (a :class:`SnapshotBank` or an :class:`AveragedBank`)."""
        raise NotImplementedError(f"{type(self).__name__} must define make_bank()")

    # --------------------------------------------------------------- plumbing
    def modify_networks(self, agent: BaseAlgorithm) -> None:
        agent.policy.add_module("snapshot_bank", self.make_bank(agent.q_net).to(agent.device))
        add_lr_factor(agent, lambda a, _role, _index, _group: self.lr_factor(a, a.num_timesteps))

    @staticmethod
    def bank(agent: BaseAlgorithm) -> Any:
        """The policy's bank."""
        return agent.policy.snapshot_bank

    def on_step(self, agent: BaseAlgorithm) -> None:
        """Store the Q network when this env step crossed a collection point (each ``learn`` call
        counts its own cycles from its first step)."""
        step = agent.num_timesteps
        if self.collection_count(agent, step) > self.collection_count(agent, max(0, step - agent.n_envs)):
            self.bank(agent).store(agent.q_net, step)

    def act(
        self,
        agent: BaseAlgorithm,
        observation: Any,
        state: Any,
        episode_start: np.ndarray | None,
        deterministic: bool,
    ) -> tuple[np.ndarray, Any]:
        """Deterministic: argmax of the bank's Q-values (once it holds weights); else DQN's ε-greedy."""
        bank = self.bank(agent)
        if not deterministic or not bank.filled:
            return DQN.predict(agent, observation, state, episode_start, deterministic)  # type: ignore[arg-type]
        agent.policy.set_training_mode(False)
        bank.eval()
        obs, vectorized = agent.policy.obs_to_tensor(observation)
        with th.no_grad():
            actions = bank.values(obs).argmax(dim=1)
        return env_actions(actions, vectorized), state
