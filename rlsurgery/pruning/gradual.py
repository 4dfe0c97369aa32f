"""Gradual magnitude pruning: sparsity raised on a cubic schedule during training.

Zhu & Gupta 2017 (https://arxiv.org/abs/1710.01878), used for deep RL by Graesser et al. 2022
(https://arxiv.org/abs/2206.10369)::

    s(t) = s_f + (s_i − s_f) · (1 − (t − t₀) / (t₁ − t₀))³      for t₀ ≤ t ≤ t₁
    every ``frequency`` env steps in [t₀, t₁]: prune globally by magnitude to s(t)

(s(t) = s_i before t₀ and s_f after t₁.) Pruned weights stay pruned: magnitudes are taken on
the masked weights, so the masks only grow. Runs as a training callback on every surgical
agent; the masks are saved with the model like every pruning mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.catalog import register
from rlsurgery.core.params import check_order, param
from rlsurgery.nets.masks import (
    apply_mask,
    effective_weight,
    smallest_magnitude_masks,
    sparsity,
    sync_target_masks,
)
from rlsurgery.pruning.base import MaskSurgery
from rlsurgery.runtime.callbacks import EveryStep


def cubic_sparsity(step: int, initial: float, final: float, start: int, end: int) -> float:
    """s(t) of the cubic schedule (constant outside [start, end])."""
    if step <= start:
        return initial
    if step >= end:
        return final
    return final + (initial - final) * (1 - (step - start) / (end - start)) ** 3


@dataclass
class GradualPruningParams:
    final_sparsity: float = param(0.9, "s_f: sparsity at the end of the schedule", ge=0.0, lt=1.0)
    initial_sparsity: float = param(0.0, "s_i: sparsity at the start of the schedule", ge=0.0, lt=1.0)
    start_step: int = param(0, "t₀: env step where pruning starts", ge=0)
    end_step: int = param(100_000, "t₁: env step where the final sparsity is reached", ge=1)
    frequency: int = param(1000, "env steps between two pruning steps", ge=1)
    include_output: bool = param(True, "also prune each network's output layer")

    def check(self) -> None:
        """t₀ < t₁ and s_i ≤ s_f."""
        check_order(self, "start_step", "end_step")
        if self.initial_sparsity > self.final_sparsity:
            raise ValueError("'initial_sparsity' must be <= 'final_sparsity'")


@register(proof="tests/pruning/test_pruning.py::test_gradual_pruning_follows_the_cubic_schedule")
class GradualMagnitudePruning(MaskSurgery):
    """Raise the sparsity along a cubic schedule while training (global magnitude pruning)."""

    key = "gradual_magnitude_pruning"
    Params = GradualPruningParams
    params: GradualPruningParams

    def masks(self, weights: list[th.Tensor]) -> list[th.Tensor]:
        return smallest_magnitude_masks(weights, self.params.initial_sparsity)

    def prune_to(self, agent: BaseAlgorithm, target: float) -> None:
        """Prune globally by magnitude (on the masked weights) until the sparsity is ``target``."""
        layers = [m for _, m in self.layers(agent)]
        with th.no_grad():
            for layer, mask in zip(
                layers, smallest_magnitude_masks([effective_weight(m) for m in layers], target)
            ):
                apply_mask(layer, mask)
        sync_target_masks(agent)
        reached = sparsity(layers)
        self.state(agent).result = {"sparsity": reached}
        agent.logger.record("train/sparsity", reached)

    def advance(self, agent: BaseAlgorithm) -> None:
        """Every env step: prune to s(t) every ``frequency`` steps within [t₀, t₁ + frequency]."""
        p = self.params
        t = agent.num_timesteps
        if p.start_step <= t <= p.end_step + p.frequency and t % p.frequency < agent.n_envs:
            self.prune_to(
                agent, cubic_sparsity(t, p.initial_sparsity, p.final_sparsity, p.start_step, p.end_step)
            )

    def callback(self, agent: BaseAlgorithm) -> Any:
        """The schedule, as a training callback."""
        return EveryStep(self.advance)
