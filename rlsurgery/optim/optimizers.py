"""Optimizer surgeries (catalog section 6): switch the optimizer mid-training, schedule its momentum.

Keskar & Socher 2017 (switching from Adam to SGD, https://arxiv.org/abs/1712.07628); Smith 2018
(momentum schedules, https://arxiv.org/abs/1803.09820)::

    optimizer_switching   at env step t_s, every optimizer of the agent becomes ``to`` over the same
                          parameters (rate: ``lr``, or the current one). Hand-over: Adam → SGD starts
                          SGD's momentum buffer at m / (1 − μ) (Adam's first moment, rescaled to SGD's
                          sum of gradients); other pairs start fresh.
    momentum_adjustment   β₁ (Adam's betas[0], SGD / RMSprop momentum) moves linearly from μ₀ to μ₁
                          over [t₀, t₁]

A model saved after the switch is rebuilt with the new optimizer on ``load`` (the switch is
replayed as soon as the saved step count is past t_s), so its saved state loads into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import ConstantSchedule

from rlsurgery.catalog import register
from rlsurgery.core.params import check_order, param
from rlsurgery.nets.optimizer_surgery import OptimizerSurgery
from rlsurgery.nets.step_hooks import add_step_hook, optimizers_by_role, record, set_optimizer
from rlsurgery.runtime.callbacks import EveryStep
from rlsurgery.runtime.schedules import piecewise_value

#: optimizer classes by name, with the keyword arguments each takes from the parameters
OPTIMIZERS: dict[str, type[th.optim.Optimizer]] = {
    "sgd": th.optim.SGD,
    "adam": th.optim.Adam,
    "adamw": th.optim.AdamW,
    "rmsprop": th.optim.RMSprop,
}


def switch_optimizer(old: th.optim.Optimizer, to: str, lr: float, momentum: float) -> th.optim.Optimizer:
    """A ``to`` optimizer over ``old``'s parameters (same groups), with the state handed over."""
    groups = [{"params": g["params"], "lr": lr or g["lr"]} for g in old.param_groups]
    kwargs: dict[str, Any] = {"momentum": momentum} if to in ("sgd", "rmsprop") else {}
    new = OPTIMIZERS[to](groups, **kwargs)
    if isinstance(old, (th.optim.Adam, th.optim.AdamW)) and to == "sgd" and momentum > 0:
        for group in new.param_groups:
            for p in group["params"]:
                if "exp_avg" in old.state.get(p, {}):
                    new.state[p]["momentum_buffer"] = old.state[p]["exp_avg"].clone() / (1 - momentum)
    return new


@dataclass
class SwitchParams:
    to: Literal["sgd", "adam", "adamw", "rmsprop"] = param("sgd", "the optimizer after the switch")
    step: int = param(50_000, "t_s: env step of the switch", ge=0)
    lr: float = param(0.0, "learning rate after the switch (0: keep the current one)", ge=0.0)
    momentum: float = param(0.9, "μ of SGD / RMSprop after the switch", ge=0.0, lt=1.0)


@register(proof="tests/optim/test_optimizers.py::test_switching_hands_over_state_and_survives_load")
class OptimizerSwitching(OptimizerSurgery):
    """Replace every optimizer of the agent by another kind at a step (e.g. Adam → SGD)."""

    key = "optimizer_switching"
    Params = SwitchParams
    params: SwitchParams

    def switched(self, agent: BaseAlgorithm) -> bool:
        return all(type(o) is OPTIMIZERS[self.params.to] for o in optimizers_by_role(agent).values())

    def switch(self, agent: BaseAlgorithm) -> None:
        """Switch now (once)."""
        if self.switched(agent):
            return
        for role, optimizer in optimizers_by_role(agent).items():
            set_optimizer(
                agent, role, switch_optimizer(optimizer, self.params.to, self.params.lr, self.params.momentum)
            )
        if self.params.lr:
            agent.lr_schedule = ConstantSchedule(self.params.lr)
        record(agent, "train/rls_optimizer_switched_at", agent.num_timesteps)

    def install(self, agent: BaseAlgorithm) -> None:
        if agent.num_timesteps >= self.params.step and agent.num_timesteps > 0:
            self.switch(agent)  # a model saved after the switch: its saved state is for the new optimizer

    def callback(self, agent: BaseAlgorithm) -> Any:
        """Switches at the first env step ≥ t_s."""
        return EveryStep(
            lambda model: self.switch(model) if model.num_timesteps >= self.params.step else None
        )


@dataclass
class MomentumParams:
    initial: float = param(0.95, "μ₀: β₁ / momentum at and before t₀", ge=0.0, lt=1.0)
    final: float = param(0.85, "μ₁: β₁ / momentum at and after t₁", ge=0.0, lt=1.0)
    start_step: int = param(0, "t₀: env step where μ starts to move", ge=0)
    end_step: int = param(100_000, "t₁: env step where μ reaches μ₁", ge=1)

    def check(self) -> None:
        """t₀ < t₁."""
        check_order(self, "start_step", "end_step")


def set_momentum(optimizer: th.optim.Optimizer, momentum: float) -> None:
    """β₁ of Adam-like optimizers, ``momentum`` of SGD / RMSprop."""
    for group in optimizer.param_groups:
        if "betas" in group:
            group["betas"] = (momentum, group["betas"][1])
        elif "momentum" in group:
            group["momentum"] = momentum


@register(proof="tests/optim/test_optimizers.py::test_momentum_follows_its_schedule")
class MomentumAdjustment(OptimizerSurgery):
    """A linear schedule of the optimizer's momentum (Adam's β₁)."""

    key = "momentum_adjustment"
    Params = MomentumParams
    params: MomentumParams

    def momentum_at(self, step: int) -> float:
        p = self.params
        return piecewise_value([[p.start_step, p.initial], [p.end_step, p.final]], step)

    def install(self, agent: BaseAlgorithm) -> None:
        add_step_hook(
            agent, lambda model, _r, opt: set_momentum(opt, self.momentum_at(model.num_timesteps)), order=20
        )
