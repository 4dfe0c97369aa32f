"""The batch that flows through a value-based agent's train step.

Stages read and write its named fields; this is the only place surgeries meet. A
replay surgery may fill ``weights`` and ``indices``; a loss stage fills
``elementwise_loss`` and ``td_error``; prioritized replay reads ``td_error`` and
``indices`` after the update.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch as th


@dataclass
class Batch:
    """Named fields of one sampled minibatch and what the stages compute from it."""

    observations: Any
    """s: observations (tensor, or dict of tensors)"""
    actions: th.Tensor
    """a: actions taken, shape (B, 1)"""
    next_observations: Any
    """s': observation after the (n-step) transition"""
    rewards: th.Tensor
    """r: (n-step discounted) reward, shape (B, 1)"""
    dones: th.Tensor
    """1 if s' is terminal (not a time-limit truncation), shape (B, 1)"""
    discounts: th.Tensor | float
    """γ^k that multiplies the bootstrap value: a float, or (B, 1) for n-step returns"""
    weights: th.Tensor | None = None
    """per-sample loss weights (B,), e.g. importance-sampling weights; None means uniform"""
    indices: Any = None
    """buffer positions of the samples, for samplers that update per-sample state"""
    current: th.Tensor | None = None
    """online estimate for the taken action: (B, 1) values or (B, K) atoms"""
    next_actions: th.Tensor | None = None
    """a*: action chosen at s' for bootstrapping, shape (B, 1)"""
    next_target_outputs: th.Tensor | None = None
    """target-network outputs at s', (B, A, K), when the next-action stage computed them"""
    target: th.Tensor | None = None
    """bootstrapped target: (B, 1) values or (B, K) atoms / probabilities"""
    elementwise_loss: th.Tensor | None = None
    """per-sample loss before weighting and reduction"""
    td_error: th.Tensor | None = None
    """per-sample non-negative error that priorities are computed from, shape (B,)"""
    extras: dict[str, Any] = field(default_factory=dict)
    """free-form fields for surgeries that need more (documented by the writer)"""
