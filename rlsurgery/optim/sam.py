"""Sharpness-aware minimization (catalog section 6), inside the surgical agents' update.

Foret et al. 2021 (https://arxiv.org/abs/2010.01412)::

    g = ∇L(θ);  ε = ρ · g / ‖g‖₂;  g_SAM = ∇L(θ + ε) on the same batch;  step from θ with g_SAM

Fills the ``before_step`` stage of every surgical agent: the update's own gradient g is there, the
loss of the stepping optimizer's role is evaluated again at θ + ε on the update's batch (the
agent's ``step_loss``, every loss surgery and auxiliary term included), the parameters go back to
θ and the optimizer steps with g_SAM (clipped as the first gradient was, where the agent clips).
On SAC and TD3 both the critics' and the actor's steps are sharpness-aware (SAC's actor loss is
re-evaluated with a fresh reparameterised sample); on TRPO only the critic's, as its actor moves
by a line search, not an optimizer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.nets.loss import LOSS_FAMILIES
from rlsurgery.nets.optimizer_surgery import OptimizerSurgery
from rlsurgery.nets.step_hooks import optimizers_by_role, record, trainable_parameters


def sam_gradient(parameters: list[th.Tensor], loss_fn: Callable[[], th.Tensor], rho: float) -> float:
    """Replace the gradients of ``parameters`` (holding ∇L(θ)) by ∇L(θ + ρ g/‖g‖); θ is left unchanged.

    :return: the loss at the perturbed point
    """
    with th.no_grad():
        norm = th.linalg.vector_norm(th.stack([th.linalg.vector_norm(p.grad) for p in parameters]))
        scale = rho / (float(norm) + 1e-12)
        origins = [p.detach().clone() for p in parameters]
        for p in parameters:
            p.add_(p.grad * scale)
    for p in parameters:
        p.grad = None
    with th.enable_grad():
        loss = loss_fn()
        loss.backward()
    with th.no_grad():
        for p, origin in zip(parameters, origins):
            p.copy_(origin)  # θ exactly as it was (θ + ε − ε would round)
            if p.grad is None:
                p.grad = th.zeros_like(p)
    return float(loss.detach())


@dataclass
class SAMParams:
    rho: float = param(0.05, "ρ: radius of the ascent step", gt=0.0)


@register(proof="tests/optim/test_sam.py::test_sam_takes_the_gradient_at_the_ascended_point")
class SharpnessAwareMinimization(OptimizerSurgery):
    """Each update uses the gradient at the worst nearby point θ + ρ·g/‖g‖ (two loss evaluations)."""

    cost_note = (
        "a second forward and backward pass per update: the gradient at θ + ε, which the method steps with"
    )
    key = "sam"
    Params = SAMParams
    params: SAMParams
    families = LOSS_FAMILIES

    stages = ("before_step",)
    stage_order = 5  # after the loss watchers (3), which may drop the update

    def install(self, agent: BaseAlgorithm) -> None:
        """Nothing to hook: the surgery fills the ``before_step`` stage."""

    def before_step(self, agent: BaseAlgorithm, role: str, batch: Any, loss: th.Tensor) -> None:
        """Replace the update's gradient by the one at θ + ρ g/‖g‖ on the same batch."""
        parameters = trainable_parameters(optimizers_by_role(agent)[role])
        if not parameters:  # the update was dropped (a loss watcher)
            return
        perturbed = sam_gradient(parameters, lambda: agent.step_loss(role, batch), self.params.rho)  # type: ignore[attr-defined]
        max_norm = agent.clip_norm(role)  # type: ignore[attr-defined]
        if max_norm is not None:
            th.nn.utils.clip_grad_norm_(parameters, max_norm)
        record(agent, "train/sam_perturbed_loss" + ("" if role == "policy" else f"_{role}"), perturbed)
