"""Evolutionary architecture search: regularized (aging) evolution of the space's ``architecture``
(Real et al. 2019, https://arxiv.org/abs/1802.01548; the sampler is
:class:`~rlsurgery.tune.evolution.RegularizedEvolutionSampler`)::

    population = the P latest finished trials; parent = best of S drawn from it;
    child = parent with one of depth, width, activation, normalization, skip, dropout, a cell
            edge or repeats changed
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.tune.methods.base import SearchMethod, require_architecture


@dataclass
class EvolutionParams:
    population_size: int = param(
        20, "P: the latest finished trials that form the population", ge=2, le=10_000
    )
    sample_size: int = param(5, "S: trials drawn from the population to pick each parent", ge=1, le=10_000)

    def check(self) -> None:
        """S ≤ P."""
        if self.sample_size > self.population_size:
            raise ValueError(
                f"'sample_size' ({self.sample_size}) must not exceed "
                f"'population_size' ({self.population_size})"
            )


@register(
    proof="tests/tune/test_nas_samplers.py::test_evolution_keeps_the_population_size_and_ages_out_the_oldest"
)
class EvolutionaryNAS(SearchMethod):
    """Aging evolution: the best of a sample of the latest trials, with one architecture choice mutated."""

    key = "evolutionary_nas"
    Params = EvolutionParams
    params: EvolutionParams

    def check_space(self, space: Any) -> None:
        require_architecture(self.key, space)

    def build(self, space: Any, budget: Any, seed: int) -> Any:
        from rlsurgery.tune.evolution import RegularizedEvolutionSampler

        self.check_space(space)
        return RegularizedEvolutionSampler(space, self.params.population_size, self.params.sample_size, seed)
