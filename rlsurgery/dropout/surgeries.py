"""Dropout surgeries (catalog section 11): random masks on units, weights, blocks and branches.

Srivastava et al. 2014 (dropout, https://jmlr.org/papers/v15/srivastava14a.html); Wan et al. 2013
(DropConnect, https://proceedings.mlr.press/v28/wan13.html); Huang et al. 2016 (stochastic depth,
https://arxiv.org/abs/1603.09382); Ghiasi et al. 2018 (DropBlock, https://arxiv.org/abs/1810.12890);
Molchanov et al. 2017 (sparse variational dropout, https://arxiv.org/abs/1701.05369)::

    dropout              h ↦ m ⊙ h / (1 − p), m_i ~ Bernoulli(1 − p)        after every hidden Linear
    dropout_scheduling   the same with p(t) moving linearly from p_start to p_end over [t₀, t₁]
    dropconnect          W ↦ M ⊙ W / (1 − p), M_ij ~ Bernoulli(1 − p)       on every hidden Linear's weights
    stochastic_depth     residual block: y = S·x + b · f(x) / (1 − p), b ~ Bernoulli(1 − p) per sample;
                         S is the identity (a projection where widths differ): a dropped block passes
                         its input through
    dropblock            conv features: zero b × b squares (seed rate γ = p/b² · HW/((H−b+1)(W−b+1))), rescale
    variational_dropout  w ~ N(θ, α θ²): local reparametrization y ~ N(xθᵀ + b, x² σ²ᵀ), KL penalty
                         −KL ≈ k₁σ(k₂ + k₃ log α) − ½ log(1 + 1/α) − k₁; weights with log α > 3 are
                         dropped (zeroed) in eval mode: the sparsity it induces

Masks act in training mode only (the agents' updates); rollouts, ``predict`` and evaluation run
in eval mode, where dropout is the identity (after rescaling during training, no scaling is
needed). Targets receive the same modules and stay in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch as th
import torch.nn.functional as F
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn
from torch.nn.utils import parametrize

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import check_order, param
from rlsurgery.nets import transform_networks
from rlsurgery.nets.blocks import Residual
from rlsurgery.nets.layout import online_networks
from rlsurgery.nets.masks import PRUNING_KEYS, output_layer_names
from rlsurgery.nets.modules import (
    conv_names,
    follow_with,
    hidden_linear_names,
    modules_of_type,
    set_submodule,
)
from rlsurgery.nets.penalty import with_penalty
from rlsurgery.nets.surgery import NetworkSurgery
from rlsurgery.runtime.callbacks import EveryStep
from rlsurgery.runtime.schedules import piecewise_value


class DropPath(nn.Module):
    """Per-sample branch drop: x ↦ b · x / (1 − p), b ~ Bernoulli(1 − p) per sample (training only)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: th.Tensor) -> th.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = th.empty((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class DropBlock2d(nn.Module):
    """Zero b × b squares of each feature map (training only), rescaled to keep the mean."""

    def __init__(self, p: float, block_size: int) -> None:
        super().__init__()
        self.p, self.block_size = p, block_size

    def forward(self, x: th.Tensor) -> th.Tensor:
        if not self.training or self.p == 0:
            return x
        h, w = x.shape[-2:]
        b = min(self.block_size, h, w)
        gamma = self.p / b**2 * (h * w) / ((h - b + 1) * (w - b + 1))
        seeds = th.zeros_like(x)
        seeds[..., : h - b + 1, : w - b + 1] = th.bernoulli(
            th.full((*x.shape[:-2], h - b + 1, w - b + 1), min(gamma, 1.0), device=x.device)
        )
        dropped = F.max_pool2d(F.pad(seeds, (b - 1, 0, b - 1, 0)), kernel_size=b, stride=1)
        keep = 1 - dropped
        return x * keep * keep.numel() / keep.sum().clamp(min=1.0)


class DropConnectMask(nn.Module):
    """Parametrization W ↦ M ⊙ W / (1 − p) with a fresh Bernoulli mask per forward pass (training only)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, weight: th.Tensor) -> th.Tensor:
        if not self.training or self.p == 0:
            return weight
        return weight * th.empty_like(weight).bernoulli_(1 - self.p) / (1 - self.p)


#: constants of Molchanov et al.'s approximation of the KL term
_K1, _K2, _K3 = 0.63576, 1.87320, 1.48695


class LinearSVDO(nn.Module):
    """A Linear layer with sparse variational dropout: w ~ N(θ, σ²), log α = log σ² − log θ²."""

    def __init__(self, linear: nn.Linear, threshold: float, kl_weight: float) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = nn.Parameter(linear.weight.detach().clone())
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())
        # α = e⁻¹⁰ for every weight at first: nothing dropped, the function of the Linear layer kept
        self.log_sigma2 = nn.Parameter(th.log(self.weight.detach() ** 2 + 1e-8) - 10.0)
        self.threshold, self.kl_weight = threshold, kl_weight

    def log_alpha(self) -> th.Tensor:
        return (self.log_sigma2 - th.log(self.weight**2 + 1e-8)).clamp(-10, 10)

    def kl(self) -> th.Tensor:
        """The KL(q(w) ‖ log-uniform prior) approximation, summed over the weights."""
        log_alpha = self.log_alpha()
        neg_kl = _K1 * th.sigmoid(_K2 + _K3 * log_alpha) - 0.5 * F.softplus(-log_alpha) - _K1
        return -neg_kl.sum()

    def kept(self) -> th.Tensor:
        """Mask of the weights kept in eval mode (log α ≤ threshold)."""
        return (self.log_alpha() <= self.threshold).to(self.weight.dtype)

    def sb3_module(self) -> nn.Linear:
        """The Linear layer computing what this one computes in eval mode (dropped weights zeroed):
        what a saved model holds for plain SB3 (see :mod:`rlsurgery.agents.sb3_zip`)."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        linear = linear.to(device=self.weight.device, dtype=self.weight.dtype)
        with th.no_grad():
            linear.weight.copy_(self.weight * self.kept())
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear

    def forward(self, x: th.Tensor) -> th.Tensor:
        if not self.training:
            return F.linear(x, self.weight * self.kept(), self.bias)
        mean = F.linear(x, self.weight, self.bias)
        std = th.sqrt(F.linear(x**2, th.exp(self.log_sigma2)) + 1e-8)
        out = mean + std * th.randn_like(mean)
        return with_penalty(out, self.kl_weight * self.kl())


class DropoutSurgery(NetworkSurgery):
    """Shared plumbing: hidden layers of the networks, the refusal when there are none."""

    build_order = 55  # after normalization layers (50), before weight reparametrizations (60)
    conflict_reason = "both replace or reparametrize the same weights"
    params: Any

    def hidden(self, net: nn.Module) -> list[str]:
        return hidden_linear_names(net, output_layer_names(net))

    def require(self, agent: BaseAlgorithm, found: Any, what: str) -> None:
        if not any(found(net) for net in online_networks(agent).values()):
            raise IncompatibleSurgeryError(f"{self.key}: {type(agent).__name__}'s networks have no {what}")


@dataclass
class DropoutParams:
    p: float = param(0.1, "drop probability of each hidden unit", ge=0.0, lt=1.0)


@register(proof="tests/dropout/test_dropout.py::test_unit_and_weight_dropout_rates_in_train_and_eval")
class Dropout(DropoutSurgery):
    """Dropout after every hidden Linear layer."""

    key = "dropout"
    sb3_representable = False  # dropout modules between SB3's layers (their indices shift)
    Params = DropoutParams
    params: DropoutParams

    def initial_p(self) -> float:
        return self.params.p

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        self.require(agent, self.hidden, "hidden Linear layer")
        transform_networks(
            agent, lambda net: follow_with(net, self.hidden(net), lambda _n, _l: nn.Dropout(self.initial_p()))
        )


@dataclass
class DropoutScheduleParams:
    p_start: float = param(0.0, "p at and before t₀", ge=0.0, lt=1.0)
    p_end: float = param(0.2, "p at and after t₁", ge=0.0, lt=1.0)
    start_step: int = param(0, "t₀: env step where p starts to move", ge=0)
    end_step: int = param(100_000, "t₁: env step where p reaches p_end", ge=1)

    def check(self) -> None:
        """t₀ < t₁."""
        check_order(self, "start_step", "end_step")


@register(proof="tests/dropout/test_dropout.py::test_dropout_schedule_and_path_and_block_drops")
class DropoutScheduling(Dropout):
    """Dropout after every hidden Linear with p moving linearly over training (e.g. curriculum dropout)."""

    key = "dropout_scheduling"
    Params = DropoutScheduleParams
    params: DropoutScheduleParams  # type: ignore[assignment]

    def p_at(self, step: int) -> float:
        p = self.params
        return piecewise_value([[p.start_step, p.p_start], [p.end_step, p.p_end]], step)

    def initial_p(self) -> float:
        return self.params.p_start

    def set_p(self, agent: BaseAlgorithm, p: float) -> None:
        for net in online_networks(agent).values():
            for module in modules_of_type(net, nn.Dropout):
                module.p = p
        agent.logger.record("train/dropout_p", p)

    def callback(self, agent: BaseAlgorithm) -> Any:
        """Sets p(t) after every env step."""
        return EveryStep(lambda model: self.set_p(model, self.p_at(model.num_timesteps)))


@dataclass
class DropConnectParams:
    p: float = param(0.1, "drop probability of each weight", ge=0.0, lt=1.0)


@register(proof="tests/dropout/test_dropout.py::test_unit_and_weight_dropout_rates_in_train_and_eval")
class DropConnect(DropoutSurgery):
    """Random weight masks on every hidden Linear layer (a parametrization of its weight)."""

    key = "dropconnect"
    Params = DropConnectParams
    params: DropConnectParams
    conflicts: ClassVar[tuple[str, ...]] = (*PRUNING_KEYS, "weight_normalization", "spectral_normalization")

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        self.require(agent, self.hidden, "hidden Linear layer")

        def mask(net: nn.Module) -> None:
            for name in self.hidden(net):
                parametrize.register_parametrization(
                    net.get_submodule(name), "weight", DropConnectMask(self.params.p)
                )

        transform_networks(agent, mask)


@dataclass
class StochasticDepthParams:
    p: float = param(
        0.1, "drop probability of each residual branch (the deepest one with mode linear)", ge=0.0, lt=1.0
    )
    mode: str = param("uniform", "uniform: p for every block; linear: p·l/L for block l of L")

    def check(self) -> None:
        """uniform or linear."""
        if self.mode not in ("uniform", "linear"):
            raise ValueError(f"'mode' must be 'uniform' or 'linear' (got {self.mode!r})")


@register(proof="tests/dropout/test_dropout.py::test_dropout_schedule_and_path_and_block_drops")
class StochasticDepth(DropoutSurgery):
    """Drop the residual branch of residual blocks per sample (add them first with
    skip_connection_addition): a dropped block outputs its shortcut S x, its input where widths match."""

    key = "stochastic_depth"
    sb3_representable = False  # residual blocks
    Params = StochasticDepthParams
    params: StochasticDepthParams
    build_order = 56  # after skip_connection_addition (25) has built the residual blocks

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        def blocks(net: nn.Module) -> list[Residual]:
            return [m for m in net.modules() if isinstance(m, Residual)]

        if not any(blocks(net) for net in online_networks(agent).values()):
            raise IncompatibleSurgeryError(
                f"{self.key}: {type(agent).__name__}'s networks have no residual block; add "
                "skip_connection_addition before it"
            )

        def wrap(net: nn.Module) -> None:
            found = blocks(net)
            for depth, block in enumerate(found, start=1):
                p = self.params.p * (depth / len(found) if self.params.mode == "linear" else 1.0)
                block.drop = DropPath(p)

        transform_networks(agent, wrap)


@dataclass
class DropBlockParams:
    p: float = param(0.1, "fraction of each feature map to drop", ge=0.0, lt=1.0)
    block_size: int = param(3, "b: side of the dropped squares (capped at the map size)", ge=1)


@register(proof="tests/dropout/test_dropout.py::test_dropout_schedule_and_path_and_block_drops")
class DropBlock(DropoutSurgery):
    """Drop contiguous squares of conv feature maps (needs a CnnPolicy)."""

    key = "dropblock"
    cost_note = (
        "a Bernoulli seed map and a max-pool to grow the seeds into b×b squares on every conv "
        "feature map, at every training forward pass"
    )
    sb3_representable = False  # DropBlock modules between SB3's conv layers
    Params = DropBlockParams
    params: DropBlockParams

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        self.require(agent, conv_names, "Conv2d layer (dropblock needs a CnnPolicy; use dropout on MLPs)")
        p = self.params
        transform_networks(
            agent,
            lambda net: follow_with(net, conv_names(net), lambda _n, _l: DropBlock2d(p.p, p.block_size)),
        )


@dataclass
class VariationalParams:
    kl_weight: float = param(1e-4, "weight of the KL penalty added to the agent's loss", ge=0.0)
    threshold: float = param(3.0, "log α above which a weight is dropped in eval mode", gt=0.0)
    include_output: bool = param(False, "also the output layers")


@register(proof="tests/dropout/test_dropout.py::test_variational_dropout_learns_sparsity")
class VariationalDropout(DropoutSurgery):
    """Sparse variational dropout: a learned noise level per weight; noisy weights are pruned in eval mode.

    :func:`variational_sparsity` gives the fraction of weights dropped (log α > threshold); it is
    logged as ``train/variational_sparsity``.
    """

    key = "variational_dropout"
    cost_note = (
        "the local reparameterisation: two matrix products per layer (the mean and the variance of "
        "the pre-activations) and a noise sample, forward and backward, plus the KL term over every"
        " weight at each training forward pass"
    )
    Params = VariationalParams
    params: VariationalParams
    conflicts: ClassVar[tuple[str, ...]] = (
        *PRUNING_KEYS,
        "weight_normalization",
        "spectral_normalization",
        "dropconnect",
    )

    def layers(self, net: nn.Module) -> list[str]:
        outputs = [n for n in sorted(output_layer_names(net)) if type(net.get_submodule(n)) is nn.Linear]
        return self.hidden(net) + (outputs if self.params.include_output else [])

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        self.require(agent, self.layers, "Linear layer to put variational dropout on")
        p = self.params

        def replace(net: nn.Module) -> None:
            for name in self.layers(net):
                set_submodule(net, name, LinearSVDO(net.get_submodule(name), p.threshold, p.kl_weight))

        transform_networks(agent, replace)

    def callback(self, agent: BaseAlgorithm) -> Any:
        """Logs ``train/variational_sparsity`` every 1000 env steps."""

        def log(model: BaseAlgorithm) -> None:
            if model.num_timesteps % 1000 < model.n_envs:
                model.logger.record("train/variational_sparsity", variational_sparsity(model))

        return EveryStep(log)


def variational_sparsity(agent: BaseAlgorithm) -> float:
    """Fraction of the variational-dropout weights of the online networks dropped in eval mode."""
    layers = [
        m for net in online_networks(agent).values() for m in net.modules() if isinstance(m, LinearSVDO)
    ]
    total = sum(m.weight.numel() for m in layers)
    kept = sum(float(m.kept().sum()) for m in layers)
    return 1 - kept / max(total, 1)
