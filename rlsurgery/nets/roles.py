"""Find the networks inside an SB3 model by role, not by attribute guessing per surgery.

A *role* names what a network does: ``q`` (the online action-value network) and its
``target`` copy for the DQN family; ``policy`` (the whole ``ActorCriticPolicy``: features,
``mlp_extractor.policy_net`` / ``value_net``, ``action_net``, ``value_net``, all under one
optimizer) for PPO and A2C; ``actor``, ``critic`` and their targets for SAC and TD3 (each
with its own optimizer).
Each online role may have a target role that must stay consistent with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn


@dataclass(frozen=True)
class NetworkRole:
    """Where a network lives on a model: the attribute path from the policy."""

    name: str
    path: str
    """attribute path below ``model.policy``"""
    target_of: str | None = None
    """for a target network: the role it tracks"""


# role tables by policy attribute layout
_DQN_ROLES = (NetworkRole("q", "q_net"), NetworkRole("q_target", "q_net_target", target_of="q"))
_QRDQN_ROLES = (
    NetworkRole("q", "quantile_net"),
    NetworkRole("q_target", "quantile_net_target", target_of="q"),
)
_ACTOR_CRITIC_ROLES = (NetworkRole("policy", ""),)
_SAC_ROLES = (
    NetworkRole("actor", "actor"),
    NetworkRole("critic", "critic"),
    NetworkRole("critic_target", "critic_target", target_of="critic"),
)
_TD3_ROLES = (*_SAC_ROLES, NetworkRole("actor_target", "actor_target", target_of="actor"))


def roles_of(model: BaseAlgorithm) -> tuple[NetworkRole, ...]:
    """The network roles of ``model`` (raises ``TypeError`` for layouts not known yet)."""
    policy = model.policy
    if hasattr(policy, "q_net") and hasattr(policy, "q_net_target"):
        return _DQN_ROLES
    if hasattr(policy, "quantile_net") and hasattr(policy, "quantile_net_target"):
        return _QRDQN_ROLES
    if hasattr(policy, "action_net") and hasattr(policy, "value_net") and hasattr(policy, "mlp_extractor"):
        return _ACTOR_CRITIC_ROLES
    if hasattr(policy, "actor") and hasattr(policy, "critic_target"):
        return _TD3_ROLES if hasattr(policy, "actor_target") else _SAC_ROLES
    raise TypeError(f"rlsurgery.nets does not know the network layout of {type(policy).__name__} yet")


def _resolve(model: BaseAlgorithm, path: str) -> nn.Module:
    obj = model.policy
    for part in filter(None, path.split(".")):
        obj = getattr(obj, part)
    return obj


def find_networks(model: BaseAlgorithm) -> dict[str, nn.Module]:
    """Role name -> network module, e.g. ``{"q": ..., "q_target": ...}`` for DQN."""
    return {role.name: _resolve(model, role.path) for role in roles_of(model)}


def online_networks(model: BaseAlgorithm) -> dict[str, nn.Module]:
    """The trained networks (no target copies)."""
    return {r.name: _resolve(model, r.path) for r in roles_of(model) if r.target_of is None}


def target_pairs(model: BaseAlgorithm) -> list[tuple[nn.Module, nn.Module]]:
    """(online, target) module pairs that must stay consistent."""
    nets = find_networks(model)
    return [(nets[r.target_of], nets[r.name]) for r in roles_of(model) if r.target_of is not None]
