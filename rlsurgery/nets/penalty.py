"""Regularization terms that modules add to the agent's loss, whatever the agent's loss is.

A module that carries a penalty R(θ) (e.g. variational dropout's KL term) returns
``with_penalty(y, R)`` from its forward pass: the value is ``y`` unchanged, and the backward
pass adds ∂R/∂θ to the gradients, exactly as if ``R`` had been added to the loss that ``y``
flows into. So a network surgery can regularize DQN, PPO or SAC without touching their
training loops. The penalty counts once per backward pass through ``y`` (one per update).
"""

from __future__ import annotations

from typing import Any

import torch as th


class _AddPenaltyGradient(th.autograd.Function):
    @staticmethod
    def forward(ctx: Any, output: th.Tensor, penalty: th.Tensor) -> th.Tensor:
        ctx.penalty_shape = penalty.shape
        return output.view_as(output)

    @staticmethod
    def backward(ctx: Any, grad_output: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        return grad_output, grad_output.new_ones(ctx.penalty_shape)


def with_penalty(output: th.Tensor, penalty: th.Tensor) -> th.Tensor:
    """``output``, with the gradient of ``penalty`` (summed, if not a scalar) added in the backward pass."""
    if not (th.is_grad_enabled() and penalty.requires_grad):
        return output
    return _AddPenaltyGradient.apply(output, penalty)
