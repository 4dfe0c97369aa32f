"""The batches that flow through the surgical agents' train steps.

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
    """Named fields of one sampled replay minibatch (DQN family, SAC, TD3) and what the stages
    compute from it."""

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
    current: Any = None
    """online estimate for the taken action: (B, 1) values or (B, K) atoms; on SAC/TD3 a tuple
    with each critic's (B, 1) estimate"""
    next_actions: th.Tensor | None = None
    """a*: action chosen at s' for bootstrapping, shape (B, 1)"""
    next_target_outputs: th.Tensor | None = None
    """target-network outputs at s', (B, A, K), when the next-action stage computed them"""
    target: th.Tensor | None = None
    """bootstrapped target: (B, 1) values or (B, K) atoms / probabilities"""
    elementwise_loss: th.Tensor | None = None
    """per-sample loss before weighting and reduction: (B,), or (B, n_critics) on SAC/TD3"""
    td_error: th.Tensor | None = None
    """per-sample non-negative error that priorities are computed from, shape (B,)"""
    policy_actions: th.Tensor | None = None
    """SAC: a ~ π(·|s) drawn with the reparameterisation (differentiable in the actor)"""
    log_prob: th.Tensor | None = None
    """SAC: log π(a|s) of ``policy_actions``, shape (B, 1)"""
    entropy_coef: th.Tensor | None = None
    """SAC: the entropy coefficient α of this update"""
    actor_loss: th.Tensor | None = None
    """SAC/TD3: the actor's loss (scalar), when the actor steps in this update"""
    extras: dict[str, Any] = field(default_factory=dict)
    """free-form fields for surgeries that need more (documented by the writer)"""


@dataclass
class PolicyBatch:
    """Named fields of one policy-gradient minibatch (PPO, A2C; TRPO's value step) and what the
    stages compute."""

    observations: Any
    """s: observations of the minibatch"""
    actions: th.Tensor
    """a: actions taken (long and flat for discrete action spaces)"""
    old_log_prob: th.Tensor
    """log π_old(a|s) recorded while collecting, shape (B,)"""
    old_values: th.Tensor
    """V_old(s) recorded while collecting, shape (B,)"""
    advantages: th.Tensor
    """GAE advantages (the advantages stage may normalise them), shape (B,)"""
    returns: th.Tensor
    """TD(λ) returns, the value target, shape (B,)"""
    clip_range: float | None = None
    """ε of the clipped surrogate at this update (PPO; None for A2C and TRPO)"""
    clip_range_vf: float | None = None
    """value clipping range, None when off"""
    values: th.Tensor | None = None
    """V(s) under the current parameters, shape (B,)"""
    log_prob: th.Tensor | None = None
    """log π(a|s) under the current parameters"""
    entropy: th.Tensor | None = None
    """H(π(·|s)), or None when the distribution has no closed form"""
    ratio: th.Tensor | None = None
    """π(a|s) / π_old(a|s)"""
    policy_loss: th.Tensor | None = None
    """surrogate policy loss (scalar)"""
    value_loss: th.Tensor | None = None
    """value loss (scalar)"""
    entropy_loss: th.Tensor | None = None
    """−H averaged over the batch (scalar), weighted by ent_coef in the total"""
    approx_kl: Any = None
    """E[(r − 1) − log r], the KL estimate used for early stopping (a 0-d numpy array, as SB3)"""
    extras: dict[str, Any] = field(default_factory=dict)
    """free-form fields for surgeries that need more (documented by the writer)"""

    @classmethod
    def from_rollout(
        cls, data: Any, clip_range: float | None = None, clip_range_vf: float | None = None
    ) -> PolicyBatch:
        """A batch from one of SB3's ``RolloutBufferSamples``."""
        return cls(
            observations=data.observations,
            actions=data.actions,
            old_log_prob=data.old_log_prob,
            old_values=data.old_values,
            advantages=data.advantages,
            returns=data.returns,
            clip_range=clip_range,
            clip_range_vf=clip_range_vf,
        )
