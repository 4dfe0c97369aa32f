"""Magnitude pruning: zero the weights of smallest absolute value.

Han et al. 2015 (https://arxiv.org/abs/1506.02626); in deep RL: Graesser et al. 2022
(https://arxiv.org/abs/2206.10369)::

    weight_pruning       m = 1[|w| ≥ τ]                                  (a fixed threshold τ)
    magnitude_pruning    prune the fraction p of smallest |w|: over all layers together
                         (scope global) or p of each layer (scope layer); exactly round(p·N)
    magnitude_based_pruning   the same surgery under its other catalog name

Masks are applied to the online networks and copied to their targets; see
:mod:`rlsurgery.pruning.base` for when they run and how they persist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch as th

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.nets.masks import smallest_magnitude_masks
from rlsurgery.pruning.base import MaskSurgery


def threshold_masks(weights: list[th.Tensor], threshold: float) -> list[th.Tensor]:
    """m = 1[|w| ≥ τ] per tensor."""
    return [(w.detach().abs() >= threshold).float() for w in weights]


@dataclass
class WeightPruningParams:
    threshold: float = param(0.01, "τ: weights with |w| < τ are zeroed", ge=0.0)
    include_output: bool = param(True, "also prune each network's output layer")


@register(proof="tests/pruning/test_pruning.py::test_threshold_and_magnitude_sparsity_are_exact")
class WeightPruning(MaskSurgery):
    """Zero every weight with |w| below a threshold τ."""

    key = "weight_pruning"
    Params = WeightPruningParams
    params: WeightPruningParams

    def masks(self, weights: list[th.Tensor]) -> list[th.Tensor]:
        return threshold_masks(weights, self.params.threshold)


@dataclass
class MagnitudePruningParams:
    amount: float = param(0.5, "p: fraction of the weights to zero", ge=0.0, lt=1.0)
    scope: Literal["global", "layer"] = param(
        "global", "rank |w| over all layers together, or within each layer"
    )
    include_output: bool = param(True, "also prune each network's output layer")


@register(proof="tests/pruning/test_pruning.py::test_threshold_and_magnitude_sparsity_are_exact")
class MagnitudePruning(MaskSurgery):
    """Zero the fraction p of weights of smallest |w| (global or per layer)."""

    key = "magnitude_pruning"
    Params = MagnitudePruningParams
    params: MagnitudePruningParams

    def masks(self, weights: list[th.Tensor]) -> list[th.Tensor]:
        if self.params.scope == "global":
            return smallest_magnitude_masks(weights, self.params.amount)
        return [smallest_magnitude_masks([w], self.params.amount)[0] for w in weights]


@register(proof="tests/pruning/test_pruning.py::test_threshold_and_magnitude_sparsity_are_exact")
class MagnitudeBasedPruning(MagnitudePruning):
    """The catalog's other name for magnitude pruning (same parameters, same masks)."""

    key = "magnitude_based_pruning"
