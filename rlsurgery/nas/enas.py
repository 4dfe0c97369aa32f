"""ENAS: child networks sampled from one weight-sharing supernet, a controller that learns which.

Pham, Guan, Zoph, Le & Dean 2018, "Efficient Neural Architecture Search via Parameter Sharing",
https://arxiv.org/abs/1802.03268. The supernet holds every candidate on every edge
(:class:`~rlsurgery.nets.cells.SearchCell`); a *child* runs one candidate per edge, with the shared
weights. The controller here is a categorical distribution per edge, p_ij = softmax(θ_ij) (the
paper's is an LSTM over the edges: a simplification), trained by REINFORCE on held-out batches::

    child c ~ p_θ;  the weight updates train c  (only c's operations run and get gradients)
    every arch_every updates:  R = −L_held-out(w, c)        (another replay batch, no weight change)
                               b ← β b + (1 − β) R
                               θ ← Adam(θ, −(R − b) ∇_θ log p_θ(c) − λ ∇_θ H(p_θ))
                               c ~ p_θ  (the next child)
    at discretize_at · T:  o_ij = argmax θ_ij     (discrete cells, trained weights kept)

The agent acts with the child being trained. The controller's logits are the cells' ``alpha``
and the child is a buffer of each cell, so ``save``/``load`` keep both. The plumbing (held-out
batches, the switch, ``load``) is :mod:`rlsurgery.nas.supernet`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.nas.supernet import SupernetParams, SupernetState, SupernetSurgery
from rlsurgery.nets.cells import SearchCell, search_cells


def reinforce_loss(logits: th.Tensor, child: th.Tensor, advantage: float, entropy_weight: float) -> th.Tensor:
    """−(R − b) log p_θ(c) − λ H(p_θ) for a controller of one categorical per edge.

    :param logits: θ, (edges, candidates)
    :param child: c, the candidate per edge (edges,)
    :param advantage: R − b
    """
    log_p = th.log_softmax(logits, dim=1)
    chosen = log_p.gather(1, child.view(-1, 1)).sum()
    entropy = -(log_p.exp() * log_p).sum()
    return -advantage * chosen - entropy_weight * entropy


@dataclass
class EnasParams(SupernetParams):
    arch_lr: float = param(0.05, "learning rate of the controller (Adam)", gt=0.0)
    baseline_decay: float = param(0.95, "β: decay of the reward's moving-average baseline", ge=0.0, lt=1.0)
    entropy_weight: float = param(1e-3, "λ: entropy bonus of the controller", ge=0.0)


@dataclass
class EnasState(SupernetState):
    baseline: float | None = None
    """b, the moving average of the held-out rewards"""


@register(proof="tests/nas/test_cells.py::test_enas_trains_the_sampled_child_and_rewards_the_controller")
class Enas(SupernetSurgery):
    """Children of one weight-sharing supernet trained in turn; a REINFORCE controller picks them."""

    key = "enas"
    cost_note = "one child (one operation per edge) per update; one more forward pass per controller step"
    Params = EnasParams
    State = EnasState
    params: EnasParams

    def after_build(self, agent: BaseAlgorithm) -> None:
        if self.cells(agent):
            self.sample_children(agent)

    def sample_children(self, agent: BaseAlgorithm) -> list[list[int]]:
        """Draw a child per cell from the controller; the online and target cells run it."""
        children = [
            th.distributions.Categorical(logits=cell.alpha.detach()).sample().tolist()
            for cell in self.cells(agent)
        ]
        for net in (agent.q_net, agent.q_net_target):
            for cell, child in zip(search_cells(net), children):
                cell.set_child(child)
        return children

    def architecture_step(self, agent: BaseAlgorithm) -> None:
        """Score the child on a held-out batch, one REINFORCE step of the controller, the next child."""
        cells, state, p = self.cells(agent), self.state(agent), self.params
        with th.no_grad():
            reward = -float(self.held_out_loss(agent))
        state.baseline = (
            reward
            if state.baseline is None
            else p.baseline_decay * state.baseline + (1 - p.baseline_decay) * reward
        )
        advantage = reward - state.baseline

        def controller_loss() -> th.Tensor:
            return sum(reinforce_loss(cell.alpha, cell.child, advantage, p.entropy_weight) for cell in cells)

        self.step_architecture(agent, controller_loss)
        self.sample_children(agent)

    def final_choice(self, cell: SearchCell) -> list[int]:
        """The controller's most likely child."""
        return cell.alpha.detach().argmax(dim=1).tolist()
