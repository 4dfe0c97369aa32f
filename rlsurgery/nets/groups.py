"""Parameter groups and freezing: which parameters of an agent train, and at what rate.

Parameters are selected by network *role* (``q``, ``policy``, ``actor``, ``critic``; see
:mod:`rlsurgery.nets.layout`) and by name patterns below that network (``fnmatch``, e.g.
``"q_net.0.*"`` or ``"*action_net*"``)::

    freeze(model, role="q", layers=["q_net.0.*"])      requires_grad = False: no gradient, no step
    train_only(model, adapter_parameters)              everything else frozen
    regroup(model, "policy", [(params_a, 0.1), ...])   one optimizer group per set, lr × its scale

A group's learning-rate scale is kept in the group (``lr_scale``) and applied by the agent's
step hooks on top of the rate SB3 writes at every ``train()`` (SB3's ``update_learning_rate``
overwrites every group's ``lr`` with the schedule's value): the group's rate is
``schedule(t) · lr_scale · Π factors`` (:mod:`rlsurgery.nets.step_hooks`). Groups and scales are
saved in the optimizer's state; a surgery that regroups or freezes at build time does it again
when ``load`` replays it, before the saved optimizer state is loaded.

>>> from stable_baselines3 import DQN
>>> model = DQN("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[8]))
>>> [name for name, _ in select_parameters(model, "q", ["q_net.0.*"])]
['q_net.0.weight', 'q_net.0.bias']
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.nets.layout import layout_of
from rlsurgery.nets.step_hooks import add_lr_factor, optimizers_by_role, set_optimizer


def select_parameters(
    model: BaseAlgorithm, role: str | None = None, layers: Sequence[str] | None = None
) -> list[tuple[str, th.nn.Parameter]]:
    """(name, parameter) of the online networks of ``role`` (all roles when None) whose name below
    that network matches one of ``layers`` (every parameter when None)."""
    online = layout_of(model).online(model.policy)
    if role is not None and role not in online:
        raise IncompatibleSurgeryError(
            f"{type(model).__name__} has no network role {role!r} (roles: {', '.join(online)})"
        )
    chosen = []
    for name, net in online.items():
        if role is not None and name != role:
            continue
        for parameter_name, parameter in net.named_parameters():
            if layers is None or any(fnmatch.fnmatchcase(parameter_name, pattern) for pattern in layers):
                chosen.append((parameter_name, parameter))
    if layers is not None and not chosen:
        raise IncompatibleSurgeryError(f"no parameter of {role or 'any role'} matches {list(layers)}")
    return chosen


def freeze(model: BaseAlgorithm, role: str | None = None, layers: Sequence[str] | None = None) -> int:
    """Stop training the selected parameters (they get no gradient, so no optimizer moves them,
    weight decay included); return how many tensors were frozen."""
    selected = select_parameters(model, role, layers)
    for _, parameter in selected:
        parameter.requires_grad_(False)
        parameter.grad = None
    return len(selected)


def unfreeze(model: BaseAlgorithm, role: str | None = None, layers: Sequence[str] | None = None) -> int:
    """Train the selected parameters again; return how many tensors were unfrozen."""
    selected = select_parameters(model, role, layers)
    for _, parameter in selected:
        parameter.requires_grad_(True)
    return len(selected)


def train_only(model: BaseAlgorithm, parameters: Sequence[th.nn.Parameter]) -> int:
    """Freeze every parameter of the online networks except ``parameters`` (which train); return
    how many numbers are left to train (parameter-efficient fine-tuning: LoRA, adapters)."""
    keep = {id(p) for p in parameters}
    trainable = 0
    for _, parameter in select_parameters(model):
        parameter.requires_grad_(id(parameter) in keep)
        if id(parameter) in keep:
            trainable += parameter.numel()
        else:
            parameter.grad = None
    return trainable


def group_scale(_agent: BaseAlgorithm, _role: str, _index: int, group: dict) -> float:
    """The learning-rate factor of a group: its ``lr_scale`` (1 without one)."""
    return float(group.get("lr_scale", 1.0))


def regroup(
    model: BaseAlgorithm, optimizer_role: str, groups: Sequence[tuple[Sequence[th.nn.Parameter], float]]
) -> th.optim.Optimizer:
    """Rebuild the optimizer of ``optimizer_role`` with one group per (parameters, lr scale), in order;
    its parameters in no group form a last group of scale 1. Per-parameter state (Adam moments) is
    kept; hyper-parameters are the optimizer's own."""
    optimizer = optimizers_by_role(model)[optimizer_role]
    owned = [p for g in optimizer.param_groups for p in g["params"]]
    owned_ids = {id(p) for p in owned}
    placed: set[int] = set()
    param_groups = []
    for parameters, scale in groups:
        mine = [p for p in parameters if id(p) in owned_ids and id(p) not in placed]
        placed.update(id(p) for p in mine)
        if mine:
            param_groups.append({"params": mine, "lr_scale": float(scale)})
    rest = [p for p in owned if id(p) not in placed]
    if rest:
        param_groups.append({"params": rest, "lr_scale": 1.0})
    hyper = {k: v for k, v in optimizer.param_groups[0].items() if k in optimizer.defaults}
    new = type(optimizer)(param_groups, **hyper)
    for p in owned:
        if p in optimizer.state:
            new.state[p] = optimizer.state[p]
    set_optimizer(model, optimizer_role, new)
    factors = getattr(model, "_rls_lr_factors", None)
    if factors is None:
        raise IncompatibleSurgeryError(f"regroup needs a surgical agent, not a plain {type(model).__name__}")
    if group_scale not in factors:
        add_lr_factor(model, group_scale)
    return new
