"""DARTS: differentiable architecture search in a supernet of softly mixed operations.

Liu, Simonyan & Yang 2019, "DARTS: Differentiable Architecture Search", https://arxiv.org/abs/1806.09055
(the first-order variant). Each edge of each cell mixes every candidate operation with softmax
weights of its architecture tensor α (:class:`~rlsurgery.nets.cells.SearchCell`)::

    ō_ij(h) = Σ_o softmax(α_ij)_o · o(h)
    w ← w − η ∇_w L_train(w, α)                      (SB3's update, the training batch)
    α ← Adam(α, ∇_α L_held-out(w, α))                (every arch_every updates, another batch)
    at discretize_at · T:  o_ij = argmax_{o ≠ zero} α_ij,o      (discrete cells, trained weights kept)

The plumbing (held-out batches, the switch to discrete cells, ``load``) is
:mod:`rlsurgery.nas.supernet`. Until the switch the agent acts with the soft supernet, which runs
every candidate on every edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.catalog import register
from rlsurgery.nas.supernet import SupernetParams, SupernetSurgery
from rlsurgery.nets.cells import SearchCell, argmax_genotype


@dataclass
class DartsParams(SupernetParams):
    """darts: the supernet parameters (DARTS's architecture learning rate, 3e-4)."""


@register(proof="tests/nas/test_cells.py::test_darts_steps_alpha_on_held_out_batches_and_keeps_the_argmax")
class Darts(SupernetSurgery):
    """A supernet of softly mixed operations; α learnt on held-out replay batches, then the argmax kept."""

    key = "darts"
    cost_note = "every candidate runs on every edge until the switch; one more loss per architecture step"
    Params = DartsParams
    params: DartsParams

    def make_optimizer(self, alphas: list[th.Tensor]) -> th.optim.Optimizer:
        """DARTS's settings: Adam, betas (0.5, 0.999), weight decay 1e-3."""
        return th.optim.Adam(alphas, lr=self.params.arch_lr, betas=(0.5, 0.999), weight_decay=1e-3)

    def architecture_step(self, agent: BaseAlgorithm) -> None:
        """α ← Adam step on the held-out loss's gradient."""
        self.step_architecture(agent, lambda: self.held_out_loss(agent))

    def final_choice(self, cell: SearchCell) -> list[int]:
        return argmax_genotype(cell)
