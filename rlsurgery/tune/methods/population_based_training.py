"""Population-based training: a population trains side by side; at every ``interval`` steps the
bottom ``quantile`` of it copies a top member and perturbs that member's hyperparameters (Jaderberg et
al. 2017, https://arxiv.org/abs/1711.09846)::

    exploit:  member i in the bottom q (by the last evaluation's mean return) takes the weights,
              optimizer state, replay buffer and step count of a member drawn from the top q
    explore:  each searched hyperparameter h of the copy becomes h · f, f drawn from ``factors``
              (clipped to the dimension's range, rounded for an integer), or, with probability
              ``resample_probability`` (always for a choice), a fresh draw from the space

So a member's hyperparameters become a schedule found during one training run. Only what a
running agent can take may be searched (:data:`PERTURBABLE`); surgery parameters and the surgery
switch are drawn once per member and inherited on exploit. The loop is in
:mod:`rlsurgery.tune.pbt`; here are its two decisions as pure functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.tune.methods.base import SearchMethod

#: hyperparameters a running SB3 agent takes when they are set on it (perturbed by PBT)
PERTURBABLE = (
    "learning_rate",
    "gamma",
    "batch_size",
    "ent_coef",
    "vf_coef",
    "max_grad_norm",
    "gae_lambda",
    "n_epochs",
    "tau",
    "target_update_interval",
    "exploration_final_eps",
)


@dataclass
class PopulationParams:
    population: int = param(8, "members trained side by side", ge=2, le=256)
    interval: int = param(10_000, "environment steps between exploit / explore rounds", ge=1)
    quantile: float = param(0.25, "the bottom share that copies the top share", gt=0.0, le=0.5)
    factors: list[float] = param([0.8, 1.2], "the factors a perturbed hyperparameter is multiplied by")
    resample_probability: float = param(
        0.25, "chance a hyperparameter is drawn afresh instead", ge=0.0, le=1.0
    )

    def check(self) -> None:
        if not self.factors or any(not f > 0 for f in self.factors):
            raise ValueError(f"'factors' must be positive numbers (got {self.factors})")


def exploit_pairs(scores: list[float], quantile: float, rng: np.random.Generator) -> dict[int, int]:
    """{bottom member: the top member it copies}: the ⌈q·n⌉ lowest scores each copy one of the
    ⌈q·n⌉ highest, drawn uniformly (ties broken by member index)."""
    n = len(scores)
    count = max(1, min(math.ceil(quantile * n), n // 2))  # the two groups never overlap
    order = sorted(range(n), key=lambda i: (scores[i], i))
    bottom, top = order[:count], order[-count:]
    return {i: int(rng.choice(top)) for i in bottom}


def perturb(
    values: dict[str, Any],
    dimensions: dict[str, Any],
    params: PopulationParams,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """The explored copy of ``values`` (hyperparameter -> value): each searched one
    (``dimensions``: name -> :class:`~rlsurgery.tune.space.Dimension`) multiplied by a factor, or
    drawn afresh with ``resample_probability`` (a choice: always drawn afresh)."""
    out = dict(values)
    for name, dim in dimensions.items():
        if dim.choices:
            out[name] = dim.choices[int(rng.integers(len(dim.choices)))]
            continue
        if rng.random() < params.resample_probability:
            if dim.log:
                value = math.exp(rng.uniform(math.log(dim.low), math.log(dim.high)))
            else:
                value = rng.uniform(dim.low, dim.high)
        else:
            value = values[name] * float(rng.choice(params.factors))
        if dim.step:  # onto the dimension's grid: low + k · step
            value = dim.low + round((value - dim.low) / dim.step) * dim.step
        if dim.is_int:
            value = round(value)
            if value == values[name]:  # a small int would never move: one step up or down
                value += int(dim.step or 1) * (1 if rng.random() < 0.5 else -1)
        value = min(max(value, dim.low), dim.high)
        out[name] = value if dim.is_int else float(value)
    return out


@register(proof="tests/tune/test_pbt.py::test_the_bottom_copies_the_top_and_perturbs_it")
class PopulationBasedTraining(SearchMethod):
    """A population trained together; the worst copy the best and perturb their hyperparameters."""

    key = "population_based_training"
    role = "sampler"
    Params = PopulationParams
    params: PopulationParams

    def build(self, space: Any, budget: Any, seed: int) -> Any:
        import optuna

        # the population's first members are independent draws, as random search's
        return optuna.samplers.RandomSampler(seed=seed)
