"""The network-surgery toolkit: every network surgery goes through these functions.

* :mod:`~rlsurgery.nets.layout` declares where each agent family keeps its networks (by role);
* :mod:`~rlsurgery.nets.modules` replaces and inserts submodules;
* :mod:`~rlsurgery.nets.optim` rebuilds optimizers over changed parameters, and
  :mod:`~rlsurgery.nets.step_hooks` runs the agents' hooks before every optimizer step;
* :func:`transform_networks` applies one transform to an online network and its
  target, keeps them consistent and rebuilds the optimizer.
"""

from __future__ import annotations

from collections.abc import Callable

from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.nets.layout import find_networks, layout_of, online_networks, resolve, roles_of, target_pairs
from rlsurgery.nets.modules import linear_layers, replace_modules, set_submodule
from rlsurgery.nets.optim import rebuild_optimizer
from rlsurgery.nets.step_hooks import attach_step_hooks


def transform_networks(
    model: BaseAlgorithm, transform: Callable[[nn.Module], None], copy_targets: bool = True
) -> None:
    """Apply ``transform`` in place to every network of ``model`` (online and target).

    Target networks receive the same transform and, with ``copy_targets``, are then loaded
    from their online network, so both have the same architecture and weights; without it
    they keep their own (lagging) weights, for transforms that do the same to both (Net2Net
    edits). Targets stay in eval mode, as SB3 keeps them. The policy is moved to the model's
    device, its optimizer is rebuilt over the new parameters (state of the parameters that
    survive is kept) and the agent's references into the networks are refreshed.
    """
    for net in find_networks(model).values():
        transform(net)
    if copy_targets:
        sync_targets(model)
    for _, target in target_pairs(model):
        target.train(False)
    model.policy.to(model.device)
    rebuild_optimizers(model)
    refresh = getattr(model, "_after_network_surgery", None)
    if refresh is not None:
        refresh()


def sync_targets(model: BaseAlgorithm) -> None:
    """Load every target network from its online network and put it in eval mode."""
    for online, target in target_pairs(model):
        target.load_state_dict(online.state_dict())
        target.train(False)


def rebuild_optimizers(model: BaseAlgorithm) -> None:
    """Rebuild every optimizer of ``model`` over its network's current parameters.

    DQN family and actor-critic policies: ``policy.optimizer`` over the online networks;
    SAC / TD3: ``actor.optimizer`` and ``critic.optimizer`` over their own networks. State of
    parameters that survive is kept.
    """
    layout = layout_of(model)
    for role, networks in layout.optimizer_networks(model.policy).items():
        owner = resolve(model.policy, layout.optimizer_owners[role])
        if getattr(owner, "optimizer", None) is not None:
            params = [p for net in networks for p in net.parameters()]
            owner.optimizer = rebuild_optimizer(owner.optimizer, params)
    attach_step_hooks(model)


__all__ = [
    "find_networks",
    "linear_layers",
    "online_networks",
    "rebuild_optimizer",
    "rebuild_optimizers",
    "replace_modules",
    "roles_of",
    "set_submodule",
    "sync_targets",
    "target_pairs",
    "transform_networks",
]
