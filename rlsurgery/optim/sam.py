"""Sharpness-aware minimization (catalog section 6), inside the surgical agents' update.

Foret et al. 2021 (https://arxiv.org/abs/2010.01412)::

    g = ∇L(θ);  ε = ρ · g / ‖g‖₂;  g_SAM = ∇L(θ + ε) on the same batch;  step from θ with g_SAM

Runs as a step hook before every other one: the update's own gradient g is there, the loss is
evaluated again at θ + ε on the update's batch (the agent's own ``compute_loss``, every loss
surgery included), the parameters go back to θ and the optimizer steps with g_SAM (clipped by
the agent's ``max_grad_norm`` as the first gradient was). DQN family and PPO.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.optim.base import OptimizerSurgery
from rlsurgery.optim.hooks import add_step_hook, record, trainable_parameters
from rlsurgery.optim.loss import LOSS_FAMILIES, loss_on_batch


def sam_gradient(parameters: list[th.Tensor], loss_fn: Callable[[], th.Tensor], rho: float) -> float:
    """Replace the gradients of ``parameters`` (holding ∇L(θ)) by ∇L(θ + ρ g/‖g‖); θ is left unchanged.

    :return: the loss at the perturbed point
    """
    with th.no_grad():
        norm = th.linalg.vector_norm(th.stack([th.linalg.vector_norm(p.grad) for p in parameters]))
        scale = rho / (float(norm) + 1e-12)
        steps = [p.grad * scale for p in parameters]
        for p, e in zip(parameters, steps):
            p.add_(e)
    for p in parameters:
        p.grad = None
    with th.enable_grad():
        loss = loss_fn()
        loss.backward()
    with th.no_grad():
        for p, e in zip(parameters, steps):
            p.sub_(e)
            if p.grad is None:
                p.grad = th.zeros_like(p)
    return float(loss.detach())


@dataclass
class SAMParams:
    rho: float = param(0.05, "ρ: radius of the ascent step", gt=0.0)


@register(proof="tests/optim/test_sam.py::test_sam_takes_the_gradient_at_the_ascended_point")
class SharpnessAwareMinimization(OptimizerSurgery):
    """Each update uses the gradient at the worst nearby point θ + ρ·g/‖g‖ (two loss evaluations)."""

    key = "sam"
    Params = SAMParams
    params: SAMParams
    families = LOSS_FAMILIES

    def install(self, agent: BaseAlgorithm) -> None:
        def ascend(model: BaseAlgorithm, role: str, optimizer: th.optim.Optimizer) -> None:
            batch = getattr(model, "_rls_last_batch", None)
            parameters = trainable_parameters(optimizer)
            if batch is None or not parameters:
                return
            loss = sam_gradient(parameters, lambda: loss_on_batch(model, batch), self.params.rho)
            max_norm = getattr(model, "max_grad_norm", None)
            if max_norm is not None:
                th.nn.utils.clip_grad_norm_(parameters, max_norm)
            model._rls_last_batch = None  # one SAM gradient per update
            record(model, "train/sam_perturbed_loss", loss)

        add_step_hook(agent, ascend, order=5)
