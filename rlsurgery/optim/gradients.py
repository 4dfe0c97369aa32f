"""Gradient and weight-decay surgeries (catalog section 6), applied right before every optimizer step.

Pascanu et al. 2013 (clipping, https://arxiv.org/abs/1211.5063); Brock et al. 2021 (adaptive
gradient clipping, https://arxiv.org/abs/2102.06171); Loshchilov & Hutter 2019 (decoupled weight
decay, https://arxiv.org/abs/1711.05101)::

    gradient_clipping           norm:  g ← g / max(1, ‖g‖₂ / c)  over all parameters of the optimizer
                                value: g ← clamp(g, −c, c)
    adaptive_gradient_clipping  per unit i (row of a weight matrix, each element of a vector):
                                g_i ← λ · max(‖w_i‖, ε) / ‖g_i‖ · g_i   when ‖g_i‖ / max(‖w_i‖, ε) > λ
    weight_decay_modification   l2:        g ← g + λ(t) · w                (decay through the optimizer)
                                decoupled: w ← w − η · λ(t) · w before the step (AdamW-style)
                                λ(t) moves linearly from λ₀ to λ₁ over [t₀, t₁]

They act after the agent's own clipping (SB3's ``max_grad_norm``), on every optimizer of the
agent (DQN, PPO, A2C, SAC/TD3 actor and critic; TRPO: its value-function step only, as its
policy step is a conjugate-gradient + line-search update that bypasses the optimizer).
``gradient_clipping`` records the norm before clipping in its state (``result``, by role) and as
``train/rls_grad_norm_<role>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.catalog import register
from rlsurgery.core.params import check_order, param
from rlsurgery.core.state import ResultState
from rlsurgery.nets.optimizer_surgery import OptimizerSurgery
from rlsurgery.nets.step_hooks import add_step_hook, record, trainable_parameters
from rlsurgery.runtime.schedules import piecewise_value


def clip_by_global_norm(parameters: list[th.Tensor], max_norm: float) -> float:
    """g ← g / max(1, ‖g‖/c) over all ``parameters`` together; returns ‖g‖ before clipping."""
    norm = th.linalg.vector_norm(th.stack([th.linalg.vector_norm(p.grad) for p in parameters]))
    scale = 1.0 / max(1.0, float(norm) / max_norm)
    if scale < 1.0:
        for p in parameters:
            p.grad.mul_(scale)
    return float(norm)


def unitwise_norm(x: th.Tensor) -> th.Tensor:
    """‖x_i‖ per output unit: rows of a matrix (and conv filters), each element of a vector."""
    if x.dim() <= 1:
        return x.abs()
    return th.linalg.vector_norm(x.reshape(x.shape[0], -1), dim=1).reshape(-1, *([1] * (x.dim() - 1)))


def adaptive_clip(weight: th.Tensor, grad: th.Tensor, clipping: float, eps: float) -> th.Tensor:
    """The AGC-clipped gradient: rows whose ‖g_i‖/max(‖w_i‖, ε) exceeds λ are scaled down to λ."""
    max_norm = unitwise_norm(weight).clamp(min=eps) * clipping
    grad_norm = unitwise_norm(grad)
    scaled = grad * (max_norm / grad_norm.clamp(min=1e-6))
    return th.where(grad_norm > max_norm, scaled, grad)


@dataclass
class ClippingParams:
    max_norm: float = param(1.0, "c: the largest gradient norm (mode norm) or |value| (mode value)", gt=0.0)
    mode: Literal["norm", "value"] = param("norm", "clip the global norm, or each value")


@register(proof="tests/optim/test_gradients.py::test_clipped_norms_agc_ratios_and_weight_decay")
class GradientClipping(OptimizerSurgery):
    """Clip the gradients by their global norm (or by value) before every update."""

    key = "gradient_clipping"
    State = ResultState
    Params = ClippingParams
    params: ClippingParams

    def install(self, agent: BaseAlgorithm) -> None:
        def clip(model: BaseAlgorithm, role: str, optimizer: th.optim.Optimizer) -> None:
            parameters = trainable_parameters(optimizer)
            if not parameters:
                return
            if self.params.mode == "value":
                for p in parameters:
                    p.grad.clamp_(-self.params.max_norm, self.params.max_norm)
                return
            norm = clip_by_global_norm(parameters, self.params.max_norm)
            self.state(model).result[role] = norm
            record(model, f"train/rls_grad_norm_{role}", norm)

        add_step_hook(agent, clip, order=30)


@dataclass
class AGCParams:
    clipping: float = param(0.01, "λ: the largest ratio ‖g_i‖ / ‖w_i‖ per unit", gt=0.0)
    eps: float = param(1e-3, "ε: floor of ‖w_i‖ (units with tiny weights can still move)", gt=0.0)


@register(proof="tests/optim/test_gradients.py::test_clipped_norms_agc_ratios_and_weight_decay")
class AdaptiveGradientClipping(OptimizerSurgery):
    """Unit-wise gradient clipping relative to the norm of the unit's weights (NFNets' AGC)."""

    key = "adaptive_gradient_clipping"
    Params = AGCParams
    params: AGCParams

    def install(self, agent: BaseAlgorithm) -> None:
        def clip(_model: BaseAlgorithm, _role: str, optimizer: th.optim.Optimizer) -> None:
            with th.no_grad():
                for p in trainable_parameters(optimizer):
                    p.grad.copy_(adaptive_clip(p.detach(), p.grad, self.params.clipping, self.params.eps))

        add_step_hook(agent, clip, order=30)


@dataclass
class WeightDecayParams:
    mode: Literal["l2", "decoupled"] = param(
        "decoupled", "l2: λw added to the gradient; decoupled: w shrunk by ηλ"
    )
    initial: float = param(1e-4, "λ₀: decay at and before t₀", ge=0.0)
    final: float = param(1e-4, "λ₁: decay at and after t₁", ge=0.0)
    start_step: int = param(0, "t₀: env step where λ starts to move", ge=0)
    end_step: int = param(100_000, "t₁: env step where λ reaches λ₁", ge=1)

    def check(self) -> None:
        """t₀ < t₁."""
        check_order(self, "start_step", "end_step")


@register(proof="tests/optim/test_gradients.py::test_clipped_norms_agc_ratios_and_weight_decay")
class WeightDecayModification(OptimizerSurgery):
    """Weight decay with a schedule, as an L2 gradient term or decoupled from the gradient (AdamW)."""

    key = "weight_decay_modification"
    Params = WeightDecayParams
    params: WeightDecayParams

    def decay_at(self, step: int) -> float:
        p = self.params
        return piecewise_value([[p.start_step, p.initial], [p.end_step, p.final]], step)

    def install(self, agent: BaseAlgorithm) -> None:
        def decay(model: BaseAlgorithm, _role: str, optimizer: th.optim.Optimizer) -> None:
            lam = self.decay_at(model.num_timesteps)
            with th.no_grad():
                for group in optimizer.param_groups:
                    for p in group["params"]:
                        if p.grad is None:
                            continue
                        if self.params.mode == "l2":
                            p.grad.add_(p, alpha=lam)
                        else:
                            p.mul_(1 - group["lr"] * lam)

        add_step_hook(agent, decay, order=40)
