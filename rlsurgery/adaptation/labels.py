"""What the label-based adaptation surgeries share: fitting the acting network to labels on target states.

A label is a greedy action (trained as the cross-entropy of the acting network's outputs, Q-values or
logits, read as logits) or an output vector (Q-values, logits or deterministic actions, trained as a
squared error). :func:`confident_actions` gives the greedy actions of some outputs and their confidence,
the softmax probability of the chosen action.
"""

from __future__ import annotations

import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.nets.layout import layout_of


def acting_outputs(agent: BaseAlgorithm, policy: th.nn.Module, obs: th.Tensor) -> th.Tensor:
    """What ``policy`` (the agent's or a copy) outputs at ``obs``: Q-values, logits or actions."""
    return layout_of(agent).outputs(policy, obs, isinstance(agent.action_space, spaces.Discrete))


def label_loss(outputs: th.Tensor, labels: th.Tensor) -> th.Tensor:
    """Cross-entropy for integer action labels (B,), else the mean squared error to label vectors."""
    if labels.dtype in (th.int64, th.int32):
        return F.cross_entropy(outputs, labels.long())
    return F.mse_loss(outputs, labels)


def confident_actions(outputs: th.Tensor, temperature: float = 1.0) -> tuple[th.Tensor, th.Tensor]:
    """(greedy action, softmax(outputs / T) probability of it) per row."""
    probabilities = F.softmax(outputs / temperature, dim=-1)
    confidence, action = probabilities.max(dim=-1)
    return action, confidence
