"""Fast geometric ensembling: short linear learning-rate cycles, a model at each cycle's low point.

Garipov, Izmailov, Podoprikhin, Vetrov & Wilson 2018, "Loss Surfaces, Mode Connectivity, and Fast
Ensembling of DNNs", https://arxiv.org/abs/1802.10026; the averaged variant is stochastic
weight averaging (Izmailov et al. 2018, https://arxiv.org/abs/1803.05407, through
``torch.optim.swa_utils.AveragedModel``). After a first stretch of ordinary training (t₀ = a
fraction of the run) the rate moves linearly between η and f_min·η in cycles of c env steps —
short enough to stay on one low-loss path — and the network at each cycle's middle, where the
rate is lowest, is collected::

    f(t) = 1                                        t < t₀
    f(t) = 1 − 2u (1 − f_min)          u ≤ ½        u = ((t − t₀) mod c) / c
    f(t) = f_min + (2u − 1)(1 − f_min) u > ½
    collect right after the update at t = t₀ + c/2, t₀ + 3c/2, … (the lowest rate)

``variant=ensemble``: the latest ``n_models`` collected networks act as an ensemble (the mean
of their Q-values); ``variant=swa``: their weights are averaged, w̄ ← w̄ + (w − w̄)/(n + 1), and
the averaged network acts. Either way only deterministic actions (evaluation) use them;
collecting stays ε-greedy on the network being trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.ensembles.snapshots import AveragedBank, SnapshotBank, SnapshotSurgery
from rlsurgery.runtime.schedules import run_length, triangular_factor


def geometric_factor(position: int, cycle: int, min_factor: float) -> float:
    """f at ``position`` steps into a cycle of ``cycle`` steps: 1 at its ends, f_min at its middle.

    >>> [round(geometric_factor(t, 4, 0.2), 2) for t in range(5)]
    [1.0, 0.6, 0.2, 0.6, 1.0]
    """
    return 1.0 + min_factor - triangular_factor(position, cycle // 2, min_factor, halve=False)


@dataclass
class GeometricParams:
    cycle_steps: int = param(2_000, "c: env steps of a cycle (even)", ge=2)
    min_factor: float = param(
        0.05, "f_min: fraction of the learning rate at a cycle's middle", ge=0.0, le=1.0
    )
    start_fraction: float = param(
        0.5, "t₀ as a fraction of the training run: cycles start there", ge=0.0, lt=1.0
    )
    n_models: int = param(10, "networks kept for the ensemble (the latest; variant=ensemble)", ge=1, le=100)
    variant: Literal["ensemble", "swa"] = param(
        "ensemble", "ensemble: the collected networks' mean Q acts; swa: their averaged weights act"
    )

    def check(self) -> None:
        """An even cycle."""
        if self.cycle_steps % 2:
            raise ValueError(f"'cycle_steps' must be even (got {self.cycle_steps})")


@register(proof="tests/ensembles/test_snapshots.py::test_fge_collects_at_each_cycle_middle")
class FastGeometricEnsembling(SnapshotSurgery):
    """Short linear learning-rate cycles late in training; the networks at their low points act together
    (or, ``variant=swa``, their averaged weights)."""

    key = "fast_geometric_ensembling"
    cost_note = "n_models frozen copies of the Q network (swa: one); greedy actions run them all"
    Params = GeometricParams
    params: GeometricParams

    def start(self, agent: BaseAlgorithm) -> int:
        """t₀ in env steps."""
        return int(self.params.start_fraction * run_length(agent))

    def lr_factor(self, agent: BaseAlgorithm, step: int) -> float:
        offset = step - self.start(agent)
        if offset < 0:
            return 1.0
        return geometric_factor(
            offset % self.params.cycle_steps, self.params.cycle_steps, self.params.min_factor
        )

    def collection_count(self, agent: BaseAlgorithm, step: int) -> int:
        # the update of the lowest rate runs at t₀ + c/2 (after that step's hooks): collect one step later
        offset = step - self.start(agent) - self.params.cycle_steps // 2 - 1
        return 0 if offset < 0 else offset // self.params.cycle_steps + 1

    def make_bank(self, net: nn.Module) -> nn.Module:
        if self.params.variant == "swa":
            return AveragedBank(net)
        return SnapshotBank(net, self.params.n_models)
