"""Backtranslation: a learnt target → source observation map, through which the source policy acts.

Inspired by back-translation in machine translation (Sennrich et al. 2016,
https://arxiv.org/abs/1511.06709) and by unpaired observation mapping for RL transfer (Gamrian &
Goldberg 2019, https://arxiv.org/abs/1806.07377). A map G(s) = s + g(s) (g a small MLP whose last
layer starts at zero: G starts as the identity) is trained on unpaired batches so that the agent's
features of translated target observations match those of source observations::

    min_G  MMD²(φ(G(s_t)), φ(s_source))       φ: the acting network's last hidden layer (fixed here)

(:func:`~rlsurgery.adaptation.feature_alignment.mmd2`), one step of G's own Adam after each update
(only G moves: the agent trains on the source as it would). On the target, the agent acts through G:
:meth:`Backtranslation.translating` wraps a target env so its observations reach the agent translated.
G lives in ``rls_modules`` and is saved with the agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.adaptation.feature_alignment import mmd2
from rlsurgery.adaptation.target import AdaptationSurgery, TargetFields
from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.nets.layout import layout_of
from rlsurgery.nets.step_hooks import record


@dataclass
class BacktranslationParams(TargetFields):
    hidden: int = param(64, "hidden units of the map's residual MLP", ge=1)
    map_lr: float = param(1e-3, "learning rate of the map's Adam", gt=0.0)
    bandwidths: list[float] = param([0.5, 1.0, 2.0, 4.0], "σ of the MMD kernels")


class ResidualMap(nn.Module):
    """G(s) = s + g(s), g's output layer zero at the start (G is the identity)."""

    def __init__(self, size: int, hidden: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(nn.Linear(size, hidden), nn.ReLU(), nn.Linear(hidden, size))
        nn.init.zeros_(self.residual[-1].weight)
        nn.init.zeros_(self.residual[-1].bias)

    def forward(self, obs: th.Tensor) -> th.Tensor:
        return obs + self.residual(obs)


class TranslatedObservations(gym.ObservationWrapper):
    """A target env whose observations reach the agent through the map G."""

    def __init__(self, env: gym.Env, translate: nn.Module) -> None:
        super().__init__(env)
        self.translate = translate
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, env.observation_space.shape, np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        device = next(self.translate.parameters()).device
        with th.no_grad():
            mapped = self.translate(th.as_tensor(observation, dtype=th.float32, device=device)[None])
        return mapped[0].cpu().numpy()


def translation_gap(
    agent: BaseAlgorithm, translate: nn.Module, target: th.Tensor, source: th.Tensor, bandwidths: list[float]
) -> th.Tensor:
    """MMD²(φ(G(s_t)), φ(s_source)): what G minimises."""
    latent = layout_of(agent).latent
    with th.no_grad():
        source_features = latent(agent.policy, source)
    return mmd2(latent(agent.policy, translate(target)), source_features, bandwidths)


@register(
    proof="tests/adaptation/test_adaptation.py::test_backtranslation_maps_target_features_onto_the_source"
)
class Backtranslation(AdaptationSurgery):
    """Learn a target → source observation map that makes the agent's features match; act through it."""

    key = "backtranslation"
    stages = ("before_step",)
    Params = BacktranslationParams
    params: BacktranslationParams
    build_order = 95

    def modify_networks(self, agent: BaseAlgorithm) -> None:
        translate = ResidualMap(int(np.prod(agent.observation_space.shape)), self.params.hidden).to(
            agent.device
        )
        agent.rls_modules[self.key] = translate
        self._optimizer = th.optim.Adam(translate.parameters(), lr=self.params.map_lr)

    def before_step(self, agent: BaseAlgorithm, role: str, batch: Any, loss: th.Tensor) -> None:
        """One step of G on a target batch and the update's source states."""
        if role not in ("policy", "actor") or batch is None:  # the optimizer of the acting network
            return
        target = self.target_batch(agent)
        if target is None:
            return
        translate = agent.rls_modules[self.key]
        source = batch.observations[: self.params.batch_size].float()
        gap = translation_gap(agent, translate, target, source, self.params.bandwidths)
        grads = th.autograd.grad(gap, list(translate.parameters()))
        for p, grad in zip(translate.parameters(), grads):
            p.grad = grad
        self._optimizer.step()
        self._optimizer.zero_grad()
        record(agent, "train/backtranslation_gap", float(gap.detach()))

    def translating(self, agent: BaseAlgorithm, env: gym.Env) -> gym.Env:
        """``env`` (the target) with its observations translated by G, for the agent to act on."""
        return TranslatedObservations(env, agent.rls_modules[self.key])
