"""Learning-rate surgeries (catalog section 5): factors on the agent's own learning rate.

Goyal et al. 2017 (warmup, https://arxiv.org/abs/1706.02677); Loshchilov & Hutter 2017 (cosine
annealing with warm restarts, SGDR, https://arxiv.org/abs/1608.03983); Smith 2017 (cyclical
rates, https://arxiv.org/abs/1506.01186); Howard & Ruder 2018 (discriminative rates per layer,
https://arxiv.org/abs/1801.06146). With η the agent's rate (its own schedule included), t the
env step and f the factor each surgery applies (they multiply when combined)::

    learning_rate_warmup       f = f₀ + (1 − f₀) · min(1, t / T_w)
    cosine_annealing           f = f_min + ½ (1 − f_min)(1 + cos(π · min(t, T) / T))
    learning_rate_restart      the same within each period; periods T₀, T₀·m, T₀·m², …  (SGDR)
    cyclical_learning_rate     triangular: f = f_min + (1 − f_min) · max(0, 1 − |t / s − 2c − 1|),
                               c = ⌊t / 2s⌋ (triangular2: the amplitude halves every cycle)
    reduce_on_plateau          f ← γ · f when the greedy evaluation return (every ``eval_freq`` steps,
                               on a separate env) has not improved by more than δ for ``patience``
                               evaluations; f ≥ f_min
    layer_wise_learning_rates  one optimizer group per layer; layer l of L (counted from the input) gets
                               f = decay^(L − 1 − l): the output layer keeps η, earlier layers less

The rate each optimizer group really uses is set right before every update (see
:mod:`rlsurgery.nets.step_hooks`) and logged as ``train/rls_learning_rate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.nets.groups import regroup
from rlsurgery.nets.layout import layout_of
from rlsurgery.nets.optimizer_surgery import OptimizerSurgery
from rlsurgery.nets.step_hooks import add_lr_factor, optimizers_by_role, record
from rlsurgery.runtime.callbacks import EveryStep
from rlsurgery.runtime.models import evaluation_env
from rlsurgery.runtime.schedules import cosine_factor, restart_position, triangular_factor, warmup_factor


class FactorSurgery(OptimizerSurgery):
    """A learning-rate factor f(t) of the env step."""

    def factor(self, step: int) -> float:
        raise NotImplementedError(f"{type(self).__name__} must define factor()")

    def install(self, agent: BaseAlgorithm) -> None:
        add_lr_factor(agent, lambda a, _role, _index, _group: self.factor(a.num_timesteps))


@dataclass
class WarmupParams:
    warmup_steps: int = param(10_000, "T_w: env steps over which the rate rises to its full value", ge=1)
    start_factor: float = param(0.01, "f₀: fraction of the rate at step 0", ge=0.0, le=1.0)


@register(proof="tests/optim/test_learning_rate.py::test_the_optimizer_rate_follows_each_formula")
class LearningRateWarmup(FactorSurgery):
    """Linear warmup of the learning rate from f₀·η to η."""

    key = "learning_rate_warmup"
    Params = WarmupParams
    params: WarmupParams

    def factor(self, step: int) -> float:
        return warmup_factor(step, self.params.warmup_steps, self.params.start_factor)


@dataclass
class CosineParams:
    period: int = param(100_000, "T: env steps of the half cosine (0: the whole training run)", ge=0)
    min_factor: float = param(0.0, "f_min: fraction of the rate at the end", ge=0.0, le=1.0)


@register(proof="tests/optim/test_learning_rate.py::test_the_optimizer_rate_follows_each_formula")
class CosineAnnealing(FactorSurgery):
    """Cosine decay of the learning rate from η to f_min·η over T steps."""

    key = "cosine_annealing"
    Params = CosineParams
    params: CosineParams

    def install(self, agent: BaseAlgorithm) -> None:
        def factor(a: BaseAlgorithm, _role: str, _index: int, _group: dict) -> float:
            period = self.params.period or max(1, int(getattr(a, "_total_timesteps", 0) or 1))
            return cosine_factor(a.num_timesteps, period, self.params.min_factor)

        add_lr_factor(agent, factor)


@dataclass
class RestartParams:
    first_period: int = param(20_000, "T₀: env steps of the first cosine period", ge=1)
    period_mult: float = param(2.0, "m: each period is m times the previous one", ge=1.0)
    min_factor: float = param(0.0, "f_min: fraction of the rate at the end of each period", ge=0.0, le=1.0)


@register(proof="tests/optim/test_learning_rate.py::test_the_optimizer_rate_follows_each_formula")
class LearningRateRestart(FactorSurgery):
    """SGDR: cosine decay restarted at the start of each (growing) period."""

    key = "learning_rate_restart"
    Params = RestartParams
    params: RestartParams

    def factor(self, step: int) -> float:
        position, period = restart_position(step, self.params.first_period, self.params.period_mult)
        return cosine_factor(position, period, self.params.min_factor)


@dataclass
class CyclicalParams:
    half_cycle: int = param(5_000, "s: env steps from the lowest to the highest rate", ge=1)
    min_factor: float = param(0.1, "f_min: lowest fraction of the rate", ge=0.0, le=1.0)
    mode: str = param("triangular", "triangular, or triangular2 (amplitude halved every cycle)")

    def check(self) -> None:
        """A known mode."""
        if self.mode not in ("triangular", "triangular2"):
            raise ValueError(f"'mode' must be 'triangular' or 'triangular2' (got {self.mode!r})")


@register(proof="tests/optim/test_learning_rate.py::test_the_optimizer_rate_follows_each_formula")
class CyclicalLearningRate(FactorSurgery):
    """Triangular cycles of the learning rate between f_min·η and η."""

    key = "cyclical_learning_rate"
    Params = CyclicalParams
    params: CyclicalParams

    def factor(self, step: int) -> float:
        p = self.params
        return triangular_factor(step, p.half_cycle, p.min_factor, p.mode == "triangular2")


@dataclass
class PlateauParams:
    eval_freq: int = param(10_000, "env steps between two greedy evaluations", ge=1)
    n_eval_episodes: int = param(5, "episodes per evaluation", ge=1)
    patience: int = param(3, "evaluations without improvement before a reduction", ge=1)
    factor: float = param(0.5, "γ: multiplier of each reduction", gt=0.0, lt=1.0)
    threshold: float = param(0.0, "δ: an improvement must exceed the best return by more than this", ge=0.0)
    min_factor: float = param(0.01, "f_min: the rate is never reduced below f_min·η", gt=0.0, le=1.0)


@dataclass
class PlateauState:
    factor: float = 1.0
    """the current multiplier of the learning rate"""
    best: float | None = None
    """the best evaluation return so far"""
    bad: int = 0
    """evaluations since the best"""
    next_eval: int | None = None
    """env step of the next evaluation (None: ``eval_freq`` from the start)"""


@register(proof="tests/optim/test_learning_rate.py::test_reduce_on_plateau_reduces_after_patience")
class ReduceOnPlateau(OptimizerSurgery):
    """Multiply the learning rate by γ when the evaluation return stops improving.

    The state (current factor, best return, evaluations since the best) is the surgery's
    :class:`PlateauState`, saved with the model.
    """

    key = "reduce_on_plateau"
    Params = PlateauParams
    params: PlateauParams
    State = PlateauState

    def install(self, agent: BaseAlgorithm) -> None:
        add_lr_factor(agent, lambda a, _role, _index, _group: self.state(a).factor)

    def observe(self, agent: BaseAlgorithm, mean_return: float) -> None:
        """Take one evaluation into account (reduce the factor after ``patience`` without improvement)."""
        state, p = self.state(agent), self.params
        if state.best is None or mean_return > state.best + p.threshold:
            state.best, state.bad = float(mean_return), 0
            return
        state.bad += 1
        if state.bad >= p.patience:
            state.factor = max(p.min_factor, state.factor * p.factor)
            state.bad = 0
            record(agent, "train/rls_plateau_factor", state.factor)

    def callback(self, agent: BaseAlgorithm) -> Any:
        """Evaluates every ``eval_freq`` env steps."""

        def evaluate(model: BaseAlgorithm) -> None:
            state = self.state(model)
            if model.num_timesteps < (state.next_eval or self.params.eval_freq):
                return
            state.next_eval = model.num_timesteps + self.params.eval_freq
            self.observe(model, self.evaluate(model))

        return EveryStep(evaluate)

    def evaluate(self, agent: BaseAlgorithm) -> float:
        """Mean greedy return on a fresh env of the agent's id."""
        env = evaluation_env(agent, self.key)
        returns = []
        for episode in range(self.params.n_eval_episodes):
            obs, _ = env.reset(seed=10_000 + episode)
            done, total = False, 0.0
            while not done:
                obs, reward, terminated, truncated, _ = env.step(agent.predict(obs, deterministic=True)[0])
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
        env.close()
        mean = float(np.mean(returns))
        record(agent, "eval/rls_plateau_return", mean)
        return mean


@dataclass
class LayerWiseParams:
    decay: float = param(0.5, "factor per layer below the output: f_l = decay^(L − 1 − l)", gt=0.0, le=1.0)


def parameter_layers(net: nn.Module) -> list[list[nn.Parameter]]:
    """The parameters of ``net`` grouped by the module that owns them, in definition order."""
    layers = []
    for module in net.modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if own:
            layers.append(own)
    return layers


@register(proof="tests/optim/test_learning_rate.py::test_layer_wise_rates_decay_with_depth")
class LayerWiseLearningRates(OptimizerSurgery):
    """One optimizer parameter group per layer; the rate decays geometrically from the output layer
    towards the input (layers = modules owning parameters, in definition order)."""

    key = "layer_wise_learning_rates"
    Params = LayerWiseParams
    params: LayerWiseParams

    def install(self, agent: BaseAlgorithm) -> None:
        """One group per layer, of scale decay^(L − 1 − l) (:func:`rlsurgery.nets.groups.regroup`)."""
        layout = layout_of(agent)
        for role, networks in layout.optimizer_networks(agent.policy).items():
            owned = {id(p) for g in optimizers_by_role(agent)[role].param_groups for p in g["params"]}
            layers = [
                [p for p in layer if id(p) in owned] for net in networks for layer in parameter_layers(net)
            ]
            layers = [layer for layer in layers if layer]
            depth = len(layers)
            regroup(
                agent, role, [(layer, self.params.decay ** (depth - 1 - i)) for i, layer in enumerate(layers)]
            )


def current_learning_rates(agent: BaseAlgorithm) -> dict[str, list[float]]:
    """The rate of every group of every optimizer, as set before the last update."""
    return {role: [g["lr"] for g in opt.param_groups] for role, opt in optimizers_by_role(agent).items()}
