"""Hyperband: several successive-halving brackets at once, each starting its trials at a different
budget, so that neither a too-early nor a too-late first cut is bet on alone (Li et al. 2018,
https://jmlr.org/papers/v18/16-558.html; Optuna's ``HyperbandPruner``)::

    s_max = ⌊log_η(R / r)⌋;  bracket s ∈ {0, …, s_max} halves from r · η^s steps up to R
    (R: the trial's budget, r: ``min_resource``); each trial is assigned to one bracket

``min_resource`` defaults to the tune's evaluation interval and the maximum to its steps per seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.tune.methods.base import SearchMethod


@dataclass
class HyperbandParams:
    reduction_factor: int = param(
        3, "η: the share 1/η of a bracket's trials that go on at each rung", ge=2, le=100
    )
    min_resource: int | None = param(
        None, "environment steps of the smallest first rung (None: the tune's --eval-freq)", ge=1
    )


@register(proof="tests/tune/test_methods.py::test_hyperband_stops_the_weak_trials_early")
class Hyperband(SearchMethod):
    """Successive halving in several brackets, each with its own first budget."""

    key = "hyperband"
    role = "pruner"
    Params = HyperbandParams
    params: HyperbandParams

    def build(self, space: Any, budget: Any, seed: int) -> Any:
        import optuna

        return optuna.pruners.HyperbandPruner(
            min_resource=self.params.min_resource or budget.eval_freq,
            max_resource=budget.steps,
            reduction_factor=self.params.reduction_factor,
        )
