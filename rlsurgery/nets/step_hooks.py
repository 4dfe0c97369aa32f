"""Step hooks: code that runs right before every optimizer step of an agent, whatever its algorithm.

SB3 calls ``optimizer.step()`` once per update in every algorithm. Each optimizer of a
surgical agent gets one step pre-hook that runs the agent's registered :data:`StepHook`
functions in order (``order``: learning rates 10, momentum 20, gradient transforms 30,
weight decay 40), with the agent, the optimizer's role (``policy``, ``actor``, ``critic``)
and the optimizer. Hooks are registered by surgeries when the agent is built or loaded, and
re-attached whenever an optimizer is rebuilt (network surgeries) or replaced (optimizer
switching).

Learning rates compose as factors: SB3 sets each group's rate from its own schedule at the
start of ``train()`` (the *base*); every rate surgery contributes a factor f(t) (warmup,
cosine, a plateau's reductions, a layer's depth decay …) and the group's rate is
base · Π f. The base is re-read whenever SB3 has written a new value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.nets.layout import layout_of

#: hook(agent, role, optimizer), run before every step of that optimizer
StepHook = Callable[[BaseAlgorithm, str, th.optim.Optimizer], None]
#: factor(agent, role, group index, group) -> multiplier of the group's base learning rate
LRFactor = Callable[[BaseAlgorithm, str, int, dict[str, Any]], float]


def optimizers_by_role(agent: BaseAlgorithm) -> dict[str, th.optim.Optimizer]:
    """The agent's network optimizers by role: ``policy`` (DQN, PPO, A2C, TRPO's value function), or
    ``actor`` and ``critic`` (SAC, TD3)."""
    return layout_of(agent).optimizers(agent.policy)


def set_optimizer(agent: BaseAlgorithm, role: str, optimizer: th.optim.Optimizer) -> None:
    """Install ``optimizer`` for ``role`` and attach the agent's step hooks to it."""
    layout_of(agent).set_optimizer(agent.policy, role, optimizer)
    attach_step_hooks(agent)


def add_step_hook(agent: BaseAlgorithm, hook: StepHook, order: int) -> None:
    """Register ``hook`` on every optimizer of ``agent`` (run in ``order``, lowest first)."""
    hooks: list[tuple[int, StepHook]] = agent._rls_step_hooks  # type: ignore[attr-defined]
    hooks.append((order, hook))
    hooks.sort(key=lambda item: item[0])
    attach_step_hooks(agent)


def add_lr_factor(agent: BaseAlgorithm, factor: LRFactor) -> None:
    """Multiply the learning rate of every optimizer group by ``factor(agent, role, index, group)``."""
    factors: list[LRFactor] = agent._rls_lr_factors  # type: ignore[attr-defined]
    if not factors:
        add_step_hook(agent, _apply_lr_factors, order=10)
    factors.append(factor)


def attach_step_hooks(agent: BaseAlgorithm) -> None:
    """Give every optimizer of ``agent`` the pre-hook that runs its step hooks (once per optimizer)."""
    if not getattr(agent, "_rls_step_hooks", None):
        return
    for role, optimizer in optimizers_by_role(agent).items():
        if getattr(optimizer, "_rls_hooked", False):
            continue
        optimizer.register_step_pre_hook(lambda opt, _args, _kwargs, role=role: _run(agent, role, opt))
        optimizer._rls_hooked = True  # type: ignore[attr-defined]


def _run(agent: BaseAlgorithm, role: str, optimizer: th.optim.Optimizer) -> None:
    for _, hook in agent._rls_step_hooks:  # type: ignore[attr-defined]
        hook(agent, role, optimizer)


def base_lr(group: dict[str, Any]) -> float:
    """The group's base rate: what SB3 last wrote (re-read when it differs from what the hooks set)."""
    if group.get("rls_lr_applied") != group["lr"]:
        group["rls_lr_base"] = group["lr"]
    return group["rls_lr_base"]


def _apply_lr_factors(agent: BaseAlgorithm, role: str, optimizer: th.optim.Optimizer) -> None:
    for index, group in enumerate(optimizer.param_groups):
        lr = base_lr(group)
        for factor in agent._rls_lr_factors:  # type: ignore[attr-defined]
            lr *= factor(agent, role, index, group)
        group["lr"] = group["rls_lr_applied"] = lr
    record(agent, f"train/rls_learning_rate_{role}", optimizer.param_groups[-1]["lr"])


def record(agent: BaseAlgorithm, key: str, value: Any) -> None:
    """Log ``key`` through SB3's logger when the agent has one (it has while it trains)."""
    logger = getattr(agent, "_logger", None)
    if logger is not None:
        logger.record(key, value)


def trainable_parameters(optimizer: th.optim.Optimizer) -> list[th.Tensor]:
    """The parameters of ``optimizer`` that have a gradient now."""
    return [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
