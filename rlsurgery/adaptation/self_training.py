"""Self-training: rounds of fitting the agent to its own confident labels of target states.

Yarowsky 1995, https://aclanthology.org/P95-1026/; Xie et al. 2020 (Noisy Student),
https://arxiv.org/abs/1911.04252. Every ``round_every`` env steps, for ``rounds`` rounds, the agent
labels the target observations collected so far (:mod:`rlsurgery.adaptation.target`) with its own
greedy action, keeping those whose confidence — the softmax probability of that action under
o(s)/T — is at least τ (``threshold``). Until the next round the acting network's loss gains::

    λ · CE(o(s), a*(s)) over batches of the kept (s, a*(s))

Discrete action spaces (DQN family, PPO, A2C). The labelled set is the surgery's state, saved with
the model; ``train/self_training_kept`` logs the fraction kept at the latest round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.adaptation.labels import acting_outputs, confident_actions, label_loss
from rlsurgery.adaptation.target import ACTING_ROLES, AdaptationSurgery, TargetFields
from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.core.surgery import ON_POLICY_FAMILIES, require_discrete_actions
from rlsurgery.nets.step_hooks import record
from rlsurgery.runtime.callbacks import EveryStep


@dataclass
class SelfTrainingParams(TargetFields):
    threshold: float = param(0.9, "τ: the least confidence of a kept label", ge=0.0, le=1.0)
    temperature: float = param(1.0, "T of the confidence softmax over the outputs", gt=0.0)
    rounds: int = param(5, "labelling rounds", ge=1)
    round_every: int = param(10_000, "env steps between two rounds", ge=1)
    weight: float = param(1.0, "λ: weight of the self-training term", ge=0.0)


@dataclass
class SelfTrainingState:
    observations: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.float32))
    """the kept target observations of the latest round"""
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """their labels, the agent's greedy actions at that round"""
    rounds_done: int = 0


def keep_confident(outputs: th.Tensor, threshold: float, temperature: float) -> tuple[th.Tensor, th.Tensor]:
    """(which rows to keep, their greedy actions): confidence ≥ τ."""
    action, confidence = confident_actions(outputs, temperature)
    return confidence >= threshold, action


@register(
    proof="tests/adaptation/test_adaptation.py::test_self_training_keeps_confident_labels_and_fits_them"
)
class SelfTraining(AdaptationSurgery):
    """Label target states with the agent's own confident greedy actions, in rounds, and fit them."""

    key = "self_training"
    families = ("dqn", *ON_POLICY_FAMILIES)
    Params = SelfTrainingParams
    params: SelfTrainingParams
    State: ClassVar[type | None] = SelfTrainingState

    def check_spaces(self, observation_space: Any, action_space: Any) -> None:
        super().check_spaces(observation_space, action_space)
        require_discrete_actions(self.key, action_space)

    def label_round(self, agent: BaseAlgorithm) -> None:
        """Label the target observations now and keep the confident ones."""
        target = self.target(agent)
        if len(target.buffer) == 0:
            return
        obs = th.as_tensor(np.stack(target.buffer), device=agent.device)
        with th.no_grad():
            keep, actions = keep_confident(
                acting_outputs(agent, agent.policy, obs), self.params.threshold, self.params.temperature
            )
        state = self.state(agent)
        state.observations = obs[keep].cpu().numpy()
        state.labels = actions[keep].cpu().numpy().astype(np.int64)
        state.rounds_done += 1
        record(agent, "train/self_training_kept", float(keep.float().mean()))

    def callback(self, agent: BaseAlgorithm) -> Any:
        """Collects target observations, and labels them at each round."""

        def step(model: BaseAlgorithm) -> None:
            self.target(model).maybe_collect(model)
            state = self.state(model)
            due = (state.rounds_done + 1) * self.params.round_every
            if state.rounds_done < self.params.rounds and model.num_timesteps >= due:
                self.label_round(model)

        return EveryStep(step)

    def aux_loss(self, agent: BaseAlgorithm, role: str, batch: Any) -> th.Tensor | None:
        state = self.state(agent)
        if role not in ACTING_ROLES or len(state.labels) == 0:
            return None
        rows = np.random.randint(len(state.labels), size=min(self.params.batch_size, len(state.labels)))
        obs = th.as_tensor(state.observations[rows], device=agent.device)
        labels = th.as_tensor(state.labels[rows], device=agent.device)
        return self.params.weight * label_loss(acting_outputs(agent, agent.policy, obs), labels)
