"""Random search over architectures: every trial draws its ``architecture`` choices (and the rest of
the space) independently of earlier results (Optuna's ``RandomSampler``). Li & Talwalkar 2019,
"Random Search and Reproducibility for Neural Architecture Search", https://arxiv.org/abs/1902.07638,
found it a strong baseline that NAS methods must beat::

    depth, width, activation, normalization, skip, dropout, each cell edge, repeats ~ uniform over
    their choices
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlsurgery.catalog import register
from rlsurgery.tune.methods.base import SearchMethod, require_architecture


@dataclass
class RandomNASParams:
    """Random architecture search has no parameter of its own (its seed is tune's ``--seed``)."""


@register(proof="tests/tune/test_nas_samplers.py::test_random_search_nas_draws_architectures_uniformly")
class RandomSearchNAS(SearchMethod):
    """Independent uniform draws of the space's architecture choices, whatever earlier trials scored."""

    key = "random_search_nas"
    Params = RandomNASParams

    def check_space(self, space: Any) -> None:
        require_architecture(self.key, space)

    def build(self, space: Any, budget: Any, seed: int) -> Any:
        import optuna

        self.check_space(space)
        return optuna.samplers.RandomSampler(seed=seed)
