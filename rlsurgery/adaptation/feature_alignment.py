"""Feature alignment: make the source and target feature distributions alike (MMD or CORAL).

Long et al. 2015 (DAN, MMD), https://arxiv.org/abs/1502.02791; Sun & Saenko 2016 (Deep CORAL),
https://arxiv.org/abs/1607.01719. With φ the acting network's last hidden layer, X = φ(source batch)
(n × d) and Y = φ(target batch) (m × d), the loss of the acting role gains λ·D(X, Y)::

    mmd     D = MMD²(X, Y) = mean k(x, x') + mean k(y, y') − 2 mean k(x, y),
            k(a, b) = Σ_σ exp(−‖a − b‖² / (2σ²)) over the bandwidths σ (biased estimator)
    coral   D = ‖C_X − C_Y‖²_F / (4 d²),  C the d × d feature covariance (unbiased, 1/(n − 1))

Target observations come from rollouts of the current policy in the target env
(:mod:`rlsurgery.adaptation.target`); only the acting network's features are aligned (DQN's Q network,
PPO/A2C's policy latent, SAC/TD3's actor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.adaptation.target import AdaptationSurgery, TargetFields
from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.nets.layout import layout_of


@dataclass
class FeatureAlignmentParams(TargetFields):
    method: str = param("mmd", "mmd (Gaussian-kernel MMD²) or coral (covariance alignment)")
    weight: float = param(1.0, "λ: weight of the alignment term", ge=0.0)
    bandwidths: list[float] = param([0.5, 1.0, 2.0, 4.0], "σ of the MMD kernels")

    def check(self) -> None:
        if self.method not in ("mmd", "coral"):
            raise ValueError(f"'method' must be 'mmd' or 'coral' (got {self.method!r})")
        if not self.bandwidths or any(b <= 0 for b in self.bandwidths):
            raise ValueError(f"'bandwidths' must be positive numbers (got {self.bandwidths})")


def mmd2(x: th.Tensor, y: th.Tensor, bandwidths: list[float]) -> th.Tensor:
    """The biased MMD² between the rows of ``x`` and ``y`` with a sum of Gaussian kernels."""

    def kernel(a: th.Tensor, b: th.Tensor) -> th.Tensor:
        distances = th.cdist(a, b).pow(2)
        return sum(th.exp(-distances / (2 * s**2)) for s in bandwidths)

    return kernel(x, x).mean() + kernel(y, y).mean() - 2 * kernel(x, y).mean()


def coral(x: th.Tensor, y: th.Tensor) -> th.Tensor:
    """‖C_x − C_y‖²_F / (4 d²) with unbiased feature covariances."""
    d = x.shape[1]
    return (th.cov(x.T) - th.cov(y.T)).pow(2).sum() / (4 * d * d)


@register(
    proof="tests/adaptation/test_adaptation.py::test_alignment_losses_match_hand_computed_values_and_align"
)
class FeatureAlignment(AdaptationSurgery):
    """Add λ·MMD² or λ·CORAL between the source and target features to the acting network's loss."""

    key = "feature_alignment"
    Params = FeatureAlignmentParams
    params: FeatureAlignmentParams

    def distance(self, x: th.Tensor, y: th.Tensor) -> th.Tensor:
        return mmd2(x, y, self.params.bandwidths) if self.params.method == "mmd" else coral(x, y)

    def aux_loss(self, agent: BaseAlgorithm, role: str, batch: Any) -> th.Tensor | None:
        batches = self.update_batches(agent, role, batch)
        if batches is None:
            return None
        latent = layout_of(agent).latent
        source, target = batches
        return self.params.weight * self.distance(latent(agent.policy, source), latent(agent.policy, target))
