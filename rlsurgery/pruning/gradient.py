"""Pruning by training signals: first-order Taylor (gradient-based) and movement scores.

Molchanov et al. 2017 (Taylor criterion, https://arxiv.org/abs/1611.06440), Lee et al. 2019
(SNIP, https://arxiv.org/abs/1810.02340); Sanh et al. 2020 (movement pruning,
https://arxiv.org/abs/2005.07683)::

    gradient_based_pruning   S = (1/T) Σ_t |w_t ⊙ ∂L_t/∂w|     (the loss change if w were removed)
    movement_pruning         S = −Σ_t w_t ⊙ ∂L_t/∂w              (weights moving away from zero score high)
    then prune the fraction p of lowest S (over all layers, or per layer)

L_t is the agent's own loss on its own replay or rollout batches: the scores are read off
the gradients of the first ``window`` updates after ``start_step`` (gradient hooks on the
weights, whatever the algorithm), then the weights are pruned once and stay pruned (the scores
being summed are not saved: a model saved while scoring scores ``window`` updates again). The layers
carry all-ones masks from the start, so ``save``/``load`` before or after the pruning restore
the same parameter names; a model whose layers already hold the target sparsity is not
pruned again. SAC/TD3: the actor loss's backward also reaches the critic's weights; those
gradients are counted too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.core.state import ResultState, transient
from rlsurgery.nets.masks import (
    apply_mask,
    effective_weight,
    is_masked,
    lowest_score_masks,
    sparsity,
    sync_target_masks,
    trained_weight,
)
from rlsurgery.pruning.base import MaskSurgery
from rlsurgery.runtime.callbacks import EveryStep


def taylor_score(weight: th.Tensor, grad: th.Tensor) -> th.Tensor:
    """|w ⊙ g|: first-order estimate of the loss change when w is set to zero."""
    return (weight * grad).abs()


def movement_score(weight: th.Tensor, grad: th.Tensor) -> th.Tensor:
    """−w ⊙ g: positive when a gradient step moves w away from zero."""
    return -(weight * grad)


class GradientScoreAccumulator:
    """Sums ``step_score(w, ∂L/∂w)`` over the backward passes through ``layers``' weights.

    :param layers: layers whose ``weight`` (``weight_orig`` when masked) is scored
    :param step_score: the per-update score of each weight
    """

    def __init__(
        self, layers: list[nn.Module], step_score: Callable[[th.Tensor, th.Tensor], th.Tensor]
    ) -> None:
        self.layers = layers
        self.step_score = step_score
        self.scores = [th.zeros_like(trained_weight(m)) for m in layers]
        self.updates = 0
        self._hooks = [trained_weight(m).register_hook(self._hook(k)) for k, m in enumerate(layers)]

    def _hook(self, k: int) -> Callable[[th.Tensor], None]:
        def add(grad: th.Tensor) -> None:
            with th.no_grad():
                self.scores[k] += self.step_score(effective_weight(self.layers[k]), grad)
            if k == 0:
                self.updates += 1

        return add

    def remove(self) -> None:
        """Stop accumulating."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []


@dataclass
class ScorePruningParams:
    amount: float = param(0.5, "p: fraction of the weights to prune", ge=0.0, lt=1.0)
    scope: Literal["global", "layer"] = param("global", "rank scores over all layers together, or per layer")
    window: int = param(100, "T: updates whose gradients are scored", ge=1)
    start_step: int = param(0, "env step from which gradients are scored", ge=0)
    include_output: bool = param(True, "also prune each network's output layer")


@dataclass
class ScorePruningState(ResultState):
    done: bool = False
    """pruned, or nothing to prune: the surgery does nothing more"""
    accumulator: GradientScoreAccumulator | None = transient()  # noqa: RUF009
    """the scores being summed, from ``start_step`` until ``window`` updates are scored (not saved)"""
    final_scores: list[th.Tensor] | None = transient()  # noqa: RUF009
    """the scores the pruning used (kept for inspection, not saved)"""


class ScorePruning(MaskSurgery):
    """Shared plumbing: all-ones masks at build, scores from the training gradients, one pruning step."""

    params: ScorePruningParams
    #: the per-update score of each weight
    step_score: Callable[[th.Tensor, th.Tensor], th.Tensor]
    State = ScorePruningState

    def masks(self, weights: list[th.Tensor]) -> list[th.Tensor]:
        return [th.ones_like(w) for w in weights]  # placeholders: the pruning comes from the training signal

    def pruned(self, layers: list[nn.Module]) -> bool:
        """Whether the layers already hold the zeros this pruning makes (e.g. a model loaded after it)."""
        sizes = [effective_weight(m).numel() for m in layers]
        wanted = (
            round(self.params.amount * sum(sizes))
            if self.params.scope == "global"
            else sum(round(self.params.amount * n) for n in sizes)
        )
        zeros = sum(int((effective_weight(m) == 0).sum()) for m in layers)
        return wanted > 0 and zeros >= wanted

    def advance(self, agent: BaseAlgorithm) -> None:
        """Every env step: start scoring at ``start_step``; prune once ``window`` updates are scored."""
        state = self.state(agent)
        if state.done:
            return
        if state.accumulator is None:
            if agent.num_timesteps < self.params.start_step:
                return
            layers = [m for _, m in self.layers(agent)]
            if self.params.amount == 0 or self.pruned(layers):  # e.g. a model loaded after its pruning
                state.done = True
            else:
                state.accumulator = GradientScoreAccumulator(layers, type(self).step_score)
            return
        if state.accumulator.updates >= self.params.window:
            self.prune_by_scores(agent, state.accumulator)

    def prune_by_scores(self, agent: BaseAlgorithm, accumulator: GradientScoreAccumulator) -> None:
        accumulator.remove()
        layers = accumulator.layers
        scores = [
            s.masked_fill(effective_weight(m) == 0, float("-inf")) if is_masked(m) else s.clone()
            for s, m in zip(accumulator.scores, layers)
        ]
        if self.params.scope == "global":
            masks = lowest_score_masks(scores, self.params.amount)
        else:
            masks = [lowest_score_masks([s], self.params.amount)[0] for s in scores]
        with th.no_grad():
            for layer, mask in zip(layers, masks):
                apply_mask(layer, mask)
        sync_target_masks(agent)
        reached = sparsity(layers)
        state = self.state(agent)
        state.result = {"sparsity": reached, "step": agent.num_timesteps}
        agent.logger.record("train/sparsity", reached)
        if agent.verbose >= 1:
            print(f"{self.key}: pruned to sparsity {reached:.3f} after {accumulator.updates} scored updates")
        state.final_scores, state.accumulator, state.done = scores, None, True

    def callback(self, agent: BaseAlgorithm) -> Any:
        """Scoring and the pruning step, as a training callback."""
        return EveryStep(self.advance)


@register(proof="tests/pruning/test_gradient_pruning.py::test_scores_accumulate_the_stated_formula")
class GradientBasedPruning(ScorePruning):
    """Prune the weights of smallest mean |w · ∂L/∂w| over the agent's own first training updates."""

    key = "gradient_based_pruning"
    Params = ScorePruningParams
    step_score = staticmethod(taylor_score)


@register(proof="tests/pruning/test_gradient_pruning.py::test_scores_accumulate_the_stated_formula")
class MovementPruning(ScorePruning):
    """Prune the weights of lowest movement score −Σ w · ∂L/∂w (those training pushes toward zero)."""

    key = "movement_pruning"
    Params = ScorePruningParams
    step_score = staticmethod(movement_score)
