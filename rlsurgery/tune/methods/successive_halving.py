"""Successive halving: trials advance through rungs of growing budget, and at each rung only the best
1/η of the trials that reached it go on (Jamieson & Talwalkar 2016, https://arxiv.org/abs/1502.07943;
asynchronous, as ASHA: Li et al. 2020, https://arxiv.org/abs/1810.05934; Optuna's
``SuccessiveHalvingPruner``)::

    rung k at r_k = min_resource · η^k environment steps;  a trial at rung k goes on only if its mean
    return over its seeds there is in the top 1/η of the trials that reached rung k

``min_resource`` defaults to the tune's evaluation interval (a trial reports at every evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.tune.methods.base import SearchMethod


@dataclass
class HalvingParams:
    reduction_factor: int = param(3, "η: the share 1/η of the trials at a rung that go on", ge=2, le=100)
    min_resource: int | None = param(
        None, "environment steps of the first rung (None: the tune's --eval-freq)", ge=1
    )


@register(proof="tests/tune/test_methods.py::test_successive_halving_stops_the_weak_trials_early")
class SuccessiveHalving(SearchMethod):
    """Rungs of growing budget; the best 1/η of the trials at each rung go on."""

    key = "successive_halving"
    role = "pruner"
    Params = HalvingParams
    params: HalvingParams

    def build(self, space: Any, budget: Any, seed: int) -> Any:
        import optuna

        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=self.params.min_resource or budget.eval_freq,
            reduction_factor=self.params.reduction_factor,
        )
