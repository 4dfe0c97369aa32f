"""Bayesian optimization: a model of the score given the configuration, from the finished trials,
chooses the next configuration (Optuna's samplers):

- ``model=tpe``: the tree-structured Parzen estimator (Bergstra et al. 2011,
  https://papers.nips.cc/paper/4443-algorithms-for-hyper-parameter-optimization): densities l(x) of
  the best γ share of trials and g(x) of the rest; the next x maximises l(x) / g(x) among samples of l;
- ``model=gp``: a Gaussian process on the scores with an expected-improvement acquisition
  (Snoek et al. 2012, https://arxiv.org/abs/1206.2944).

The first ``n_startup_trials`` trials are random, so that the model has data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.tune.methods.base import SearchMethod


@dataclass
class BayesianParams:
    model: Literal["tpe", "gp"] = param("tpe", "the model of the score: TPE, or a Gaussian process")
    n_startup_trials: int = param(10, "random trials before the model chooses", ge=1, le=10_000)
    multivariate: bool = param(
        True, "TPE: one joint density over the dimensions (it sees how they interact), not one each"
    )


@register(proof="tests/tune/test_methods.py::test_bayesian_optimization_concentrates_near_the_optimum")
class BayesianOptimization(SearchMethod):
    """A model of the score chooses each next configuration (TPE or a Gaussian process)."""

    key = "bayesian_optimization"
    Params = BayesianParams
    params: BayesianParams

    def build(self, space: Any, budget: Any, seed: int) -> Any:
        import optuna

        p = self.params
        if p.model == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=p.n_startup_trials)
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=p.n_startup_trials, multivariate=p.multivariate
        )
