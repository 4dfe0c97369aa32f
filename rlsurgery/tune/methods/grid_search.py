"""Grid search: every point of the product of the dimensions' values, each trained once (Optuna's
``GridSampler``; Bergstra & Bengio 2012, https://jmlr.org/papers/v13/bergstra12a.html, for why it
wastes trials on dimensions that do not matter)::

    points = Π_d values(d)   (a range needs a step: low, low + step, …, high; the switch: its subsets)

The tune stops when every point has been trained, whatever ``--trials`` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlsurgery.catalog import register
from rlsurgery.tune.methods.base import SearchMethod


@dataclass
class GridParams:
    """Grid search has no parameter of its own: the grid is the space's."""


@register(proof="tests/tune/test_methods.py::test_grid_search_trains_every_point_once")
class GridSearch(SearchMethod):
    """Every combination of the space's values, once each."""

    key = "grid_search"
    Params = GridParams

    def build(self, space: Any, budget: Any, seed: int) -> Any:
        import optuna

        return optuna.samplers.GridSampler(space.grid(), seed=seed)
