"""Co-training: two views of the observation, two heads that label each other's confident target states.

Blum & Mitchell 1998, https://dl.acm.org/doi/10.1145/279943.279962. The observation's entries are split
into two views (``view_a``: indices of view A; view B is the rest). Two small heads f_A(x_A), f_B(x_B)
predict the agent's greedy action a*(s). Each update, with s the training batch's states and s_t target
observations (:mod:`rlsurgery.adaptation.target`)::

    heads    CE(f_A(s_A), a*(s)) + CE(f_B(s_B), a*(s))                  (the agent's labels)
             + CE(f_B(s_t,B), ŷ_A) [conf_A ≥ τ] + CE(f_A(s_t,A), ŷ_B) [conf_B ≥ τ]   (each labels the other)
    agent    λ · CE(o(s_t), ŷ) over the target states where both heads give ŷ with confidence ≥ τ

ŷ_V = argmax f_V, conf_V its softmax probability; o the acting network's outputs. The heads have their own
Adam (stepped after each update's backward pass) and live in ``rls_modules``. Discrete actions, 1-D Box
observations (DQN family, PPO, A2C).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.adaptation.labels import acting_outputs, confident_actions
from rlsurgery.adaptation.target import ACTING_ROLES, AdaptationSurgery, TargetFields
from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import param
from rlsurgery.core.surgery import ON_POLICY_FAMILIES, require_discrete_actions
from rlsurgery.nets.step_hooks import record


@dataclass
class CoTrainingParams(TargetFields):
    view_a: list[int] = param([], "observation entries of view A (view B: the others); empty: the first half")
    threshold: float = param(
        0.9, "τ: the least confidence of a label one head gives the other", ge=0.0, le=1.0
    )
    weight: float = param(1.0, "λ: weight of the agreed target labels in the agent's loss", ge=0.0)
    hidden: int = param(64, "hidden units of each head", ge=1)
    head_lr: float = param(1e-3, "learning rate of the heads' Adam", gt=0.0)


def views(obs: th.Tensor, view_a: list[int]) -> tuple[th.Tensor, th.Tensor]:
    """(x_A, x_B): the entries of view A and the rest."""
    mask = th.zeros(obs.shape[-1], dtype=th.bool, device=obs.device)
    mask[view_a] = True
    return obs[..., mask], obs[..., ~mask]


def cross_labels(
    outputs_a: th.Tensor, outputs_b: th.Tensor, threshold: float
) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
    """Each head's confident labels for the other, and the rows where both agree confidently:
    (ŷ_A, kept_A, ŷ_B, kept_B, agreed)."""
    label_a, conf_a = confident_actions(outputs_a.detach())
    label_b, conf_b = confident_actions(outputs_b.detach())
    kept_a, kept_b = conf_a >= threshold, conf_b >= threshold
    return label_a, kept_a, label_b, kept_b, kept_a & kept_b & (label_a == label_b)


def _masked_ce(outputs: th.Tensor, labels: th.Tensor, kept: th.Tensor) -> th.Tensor:
    if not bool(kept.any()):
        return outputs.sum() * 0.0
    return F.cross_entropy(outputs[kept], labels[kept])


@register(proof="tests/adaptation/test_adaptation.py::test_co_training_heads_label_each_other_and_the_agent")
class CoTraining(AdaptationSurgery):
    """Two view heads that learn the agent's actions and label each other's confident target states."""

    key = "co_training"
    families = ("dqn", *ON_POLICY_FAMILIES)
    stages = ("aux_loss", "before_step")
    Params = CoTrainingParams
    params: CoTrainingParams
    build_order = 95

    def check_spaces(self, observation_space: Any, action_space: Any) -> None:
        super().check_spaces(observation_space, action_space)
        require_discrete_actions(self.key, action_space)
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
            raise IncompatibleSurgeryError(f"{self.key}: needs 1-D Box observations to split into two views")
        size = observation_space.shape[0]
        chosen = self.view_a(size)
        if not chosen or len(chosen) >= size or any(not 0 <= i < size for i in chosen):
            raise IncompatibleSurgeryError(
                f"{self.key}: view_a must name some but not all of the {size} observation entries "
                f"(got {chosen})"
            )

    def view_a(self, size: int) -> list[int]:
        """View A's entries (the first half unless given)."""
        return list(self.params.view_a) or list(range(size // 2))

    def modify_networks(self, agent: BaseAlgorithm) -> None:
        size = agent.observation_space.shape[0]
        n_a = len(self.view_a(size))
        n = int(agent.action_space.n)
        hidden = self.params.hidden
        heads = nn.ModuleDict(
            {
                "a": nn.Sequential(nn.Linear(n_a, hidden), nn.ReLU(), nn.Linear(hidden, n)),
                "b": nn.Sequential(nn.Linear(size - n_a, hidden), nn.ReLU(), nn.Linear(hidden, n)),
            }
        ).to(agent.device)
        agent.rls_modules[self.key] = heads
        self._optimizer = th.optim.Adam(heads.parameters(), lr=self.params.head_lr)

    def aux_loss(self, agent: BaseAlgorithm, role: str, batch: Any) -> th.Tensor | None:
        if role not in ACTING_ROLES:
            return None
        heads = agent.rls_modules[self.key]
        view_a = self.view_a(agent.observation_space.shape[0])
        source = batch.observations[: self.params.batch_size].float()
        with th.no_grad():
            greedy = acting_outputs(agent, agent.policy, source).argmax(dim=-1)
        a, b = views(source, view_a)
        loss = F.cross_entropy(heads["a"](a), greedy) + F.cross_entropy(heads["b"](b), greedy)
        target = self.target_batch(agent)
        if target is None:
            return loss
        ta, tb = views(target, view_a)
        out_a, out_b = heads["a"](ta), heads["b"](tb)
        label_a, kept_a, label_b, kept_b, agreed = cross_labels(out_a, out_b, self.params.threshold)
        loss = loss + _masked_ce(out_b, label_a, kept_a) + _masked_ce(out_a, label_b, kept_b)
        record(agent, "train/co_training_agreed", float(agreed.float().mean()))
        if bool(agreed.any()):
            outputs = acting_outputs(agent, agent.policy, target)
            loss = loss + self.params.weight * F.cross_entropy(outputs[agreed], label_a[agreed])
        return loss

    def before_step(self, agent: BaseAlgorithm, role: str, batch: Any, loss: th.Tensor) -> None:
        """Step the heads on the gradient the update's backward pass gave them."""
        heads = agent.rls_modules[self.key]
        if any(p.grad is not None for p in heads.parameters()):
            self._optimizer.step()
            self._optimizer.zero_grad()
