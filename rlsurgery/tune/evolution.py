"""Regularized (aging) evolution as an Optuna sampler, over a space's architecture choices.

Real, Aggarwal, Huang & Le 2019, "Regularized Evolution for Image Classifier Architecture Search",
https://arxiv.org/abs/1802.01548. Optuna has no aging evolution (its genetic samplers keep the
fittest, not the youngest), so this is a :class:`optuna.samplers.BaseSampler` that reads the
study's own trials — storage, resume and several workers work as for any Optuna sampler::

    population = the P most recently finished trials          (the oldest ages out, however good)
    while fewer than P have finished: random architectures
    parent     = the best of S trials drawn from the population without replacement
    child      = parent with one architecture choice changed to another of its values

Each child records its parent's trial number (system attribute ``evolution:parent``) and the
choice it changed (``evolution:mutated``). The space's other dimensions (hyperparameters,
surgery parameters) are drawn by Optuna's random sampler for every trial.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from rlsurgery.tune.space import SearchSpace, encode_choice

PARENT_ATTR = "evolution:parent"
MUTATED_ATTR = "evolution:mutated"


def population(trials: Sequence[FrozenTrial], size: int) -> list[FrozenTrial]:
    """The ``size`` most recently finished trials (by completion time, then number), oldest first."""
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    finished.sort(key=lambda t: (t.datetime_complete is None, t.datetime_complete or 0, t.number))
    return finished[-size:]


def tournament(
    members: Sequence[FrozenTrial], sample_size: int, maximize: bool, rng: np.random.Generator
) -> FrozenTrial:
    """The best of ``sample_size`` members drawn without replacement."""
    drawn = rng.choice(len(members), size=min(sample_size, len(members)), replace=False)
    contenders = [members[i] for i in sorted(drawn)]
    values = [t.value for t in contenders]
    return contenders[int(np.argmax(values) if maximize else np.argmin(values))]


def mutate(
    params: dict[str, Any], choices: dict[str, tuple[Any, ...]], rng: np.random.Generator
) -> tuple[dict[str, Any], str]:
    """``params`` with one of the ``choices`` that has several values changed; (child, the name changed).

    >>> child, name = mutate({"a": 1, "b": "x"}, {"a": (1,), "b": ("x", "y")}, np.random.default_rng(0))
    >>> child, name
    ({'a': 1, 'b': 'y'}, 'b')
    """
    mutable = sorted(n for n, values in choices.items() if len(values) > 1)
    if not mutable:
        return dict(params), ""
    name = mutable[int(rng.integers(len(mutable)))]
    others = [v for v in choices[name] if v != params.get(name)]
    child = dict(params)
    child[name] = others[int(rng.integers(len(others)))]
    return child, name


class RegularizedEvolutionSampler(optuna.samplers.BaseSampler):
    """Aging evolution over ``space``'s architecture choices (see the module docstring).

    :param space: the search space (its ``architecture`` is evolved)
    :param population_size: P
    :param sample_size: S, the tournament size
    :param seed: seed of the draws (and of the random sampler for the other dimensions)
    """

    def __init__(self, space: SearchSpace, population_size: int = 20, sample_size: int = 5, seed: int = 0):
        self.choices = {
            name: tuple(encode_choice(c) for c in d.choices) for name, d in space.architecture.items()
        }
        self.population_size = population_size
        self.sample_size = sample_size
        self._rng = np.random.default_rng(seed)
        self._random = optuna.samplers.RandomSampler(seed=seed)

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._random.reseed_rng()

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {name: CategoricalDistribution(values) for name, values in self.choices.items()}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        members = population(
            study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), self.population_size
        )
        if not search_space or len(members) < self.population_size:
            return {}  # the first population: random architectures (sample_independent)
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        parent = tournament(members, self.sample_size, maximize, self._rng)
        start = {name: parent.params.get(name) for name in search_space}
        child, changed = mutate(start, {n: self.choices[n] for n in search_space}, self._rng)
        study._storage.set_trial_system_attr(trial._trial_id, PARENT_ATTR, parent.number)
        study._storage.set_trial_system_attr(trial._trial_id, MUTATED_ATTR, changed)
        return child

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)
