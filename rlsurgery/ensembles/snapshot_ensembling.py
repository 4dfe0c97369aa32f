"""Snapshot ensembling: cosine learning-rate cycles, a snapshot at the end of each, their ensemble acts.

Huang, Li, Pleiss, Liu, Hopcroft & Weinberger 2017, "Snapshot Ensembles: Train 1, get M for free",
https://arxiv.org/abs/1704.00109. Training is cut into cycles of c env steps; within each the
learning rate anneals from η to f_min·η along a cosine, and at each cycle's end — a local minimum
the next cycle's high rate leaves — the Q network is stored::

    f(t) = f_min + ½ (1 − f_min)(1 + cos(π · (t mod c) / c)),      c = cycle_steps (0: T / M)
    snapshot at t = c, 2c, 3c, …    (the latest M kept)
    Q_ens(s, a) = 1/m Σ_j Q_{θ_j}(s, a)      over the m ≤ M snapshots taken so far

Deterministic actions (evaluation) are argmax_a Q_ens; collecting stays ε-greedy on the network
being trained. The factor multiplies the agent's own rate schedule (and any other rate surgery).
"""

from __future__ import annotations

from dataclasses import dataclass

from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.ensembles.snapshots import SnapshotBank, SnapshotSurgery
from rlsurgery.runtime.schedules import cosine_factor, run_length


@dataclass
class SnapshotParams:
    n_snapshots: int = param(5, "M: snapshots kept (the latest)", ge=1, le=100)
    cycle_steps: int = param(0, "c: env steps of a cycle (0: the training run split into M cycles)", ge=0)
    min_factor: float = param(
        0.0, "f_min: fraction of the learning rate at the end of a cycle", ge=0.0, le=1.0
    )


@register(
    proof="tests/ensembles/test_snapshots.py::test_snapshots_are_taken_at_the_cycle_ends_and_act_together"
)
class SnapshotEnsembling(SnapshotSurgery):
    """Cyclic cosine learning rate; the Q network at each cycle's end joins the acting ensemble."""

    key = "snapshot_ensembling"
    cost_note = "M frozen copies of the Q network; greedy actions run all M"
    Params = SnapshotParams
    params: SnapshotParams

    def cycle(self, agent: BaseAlgorithm) -> int:
        """c in env steps."""
        return self.params.cycle_steps or max(1, run_length(agent) // self.params.n_snapshots)

    def lr_factor(self, agent: BaseAlgorithm, step: int) -> float:
        c = self.cycle(agent)
        return cosine_factor(step % c, c, self.params.min_factor)

    def collection_count(self, agent: BaseAlgorithm, step: int) -> int:
        return step // self.cycle(agent)

    def make_bank(self, net: nn.Module) -> SnapshotBank:
        return SnapshotBank(net, self.params.n_snapshots)
