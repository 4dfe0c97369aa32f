"""Random search: each trial's configuration drawn independently of every earlier result (Optuna's
``RandomSampler``; Bergstra & Bengio 2012, https://jmlr.org/papers/v13/bergstra12a.html)::

    x_d ~ U(low, high)  (log-uniform with log: true; uniform over the choices)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlsurgery.catalog import register
from rlsurgery.tune.methods.base import SearchMethod


@dataclass
class RandomParams:
    """Random search has no parameter of its own (its seed is tune's ``--seed``)."""


@register(proof="tests/tune/test_methods.py::test_random_search_ignores_the_results")
class RandomSearch(SearchMethod):
    """Independent draws from the space, whatever earlier trials scored."""

    key = "random_search"
    Params = RandomParams

    def build(self, space: Any, budget: Any, seed: int) -> Any:
        import optuna

        return optuna.samplers.RandomSampler(seed=seed)
