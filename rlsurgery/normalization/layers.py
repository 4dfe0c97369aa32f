"""Normalization layers (catalog section 12): batch, layer, group and instance normalization.

Ioffe & Szegedy 2015 (https://arxiv.org/abs/1502.03167); Ba et al. 2016
(https://arxiv.org/abs/1607.06450); Wu & He 2018 (https://arxiv.org/abs/1803.08494); Ulyanov
et al. 2016 (https://arxiv.org/abs/1607.08022)::

    y = γ ⊙ (x − μ) / sqrt(σ² + ε) + β, with μ, σ² taken over
        batch_normalization     the batch, per unit / channel (running averages in eval mode)
        layer_normalization     the units of each sample
        group_normalization     each group of G consecutive units / channels of each sample
        instance_normalization  the spatial positions of each channel of each sample (conv features)

Inserted right after every hidden Linear layer (before its activation; conv layers for batch,
group and instance normalization), in online and target networks alike. Batch normalization
and target networks: SB3 keeps targets in eval mode, so a target normalizes with its running
statistics, which the agents copy from the online network at every target update (DQN, SAC,
TD3: ``batch_norm_stats``); the surgery refreshes those references. Rollouts and ``predict``
run in eval mode (running statistics), updates in training mode (batch statistics).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import param
from rlsurgery.nets import transform_networks
from rlsurgery.nets.data import layer_outputs
from rlsurgery.nets.layout import online_networks
from rlsurgery.nets.masks import output_layer_names
from rlsurgery.nets.modules import conv_names, follow_with, hidden_linear_names
from rlsurgery.nets.surgery import NetworkSurgery


class NormalizationLayerSurgery(NetworkSurgery):
    """Shared plumbing: which layers get a normalization after them; refusal when none."""

    sb3_representable = False  # normalization layers between SB3's layers

    build_order = 50  # after structural edits and activations, before reparametrizations (60)
    #: normalize after hidden Linear layers / after Conv2d layers
    on_linear: ClassVar[bool] = True
    on_conv: ClassVar[bool] = True
    params: Any
    skipped: ClassVar[set[str]] = set()

    def convs_to_skip(self, agent: BaseAlgorithm) -> set[str]:
        """Conv layers this normalization cannot follow (none by default)."""
        return set()

    def for_linear(self, features: int) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} must define for_linear()")

    def for_conv(self, channels: int) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} must define for_conv()")

    def places(self, net: nn.Module) -> tuple[list[str], list[str]]:
        linears = hidden_linear_names(net, output_layer_names(net)) if self.on_linear else []
        return linears, [c for c in conv_names(net) if c not in self.skipped] if self.on_conv else []

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        self.skipped = self.convs_to_skip(agent)
        if not any(any(self.places(net)) for net in online_networks(agent).values()):
            where = " or ".join(
                w for w, on in (("hidden Linear", self.on_linear), ("Conv2d", self.on_conv)) if on
            )
            raise IncompatibleSurgeryError(
                f"{self.key}: {type(agent).__name__}'s networks have no {where} layer"
            )

        def insert(net: nn.Module) -> None:
            linears, convs = self.places(net)
            try:
                follow_with(net, linears, lambda _n, layer: self.for_linear(layer.out_features))
                follow_with(net, convs, lambda _n, layer: self.for_conv(layer.out_channels))
            except ValueError as error:
                raise IncompatibleSurgeryError(f"{self.key}: {error}") from error

        transform_networks(agent, insert)


@dataclass
class BatchNormParams:
    momentum: float = param(0.1, "weight of the newest batch in the running statistics", gt=0.0, le=1.0)
    eps: float = param(1e-5, "ε added to the variance", gt=0.0)


@register(
    proof="tests/normalization/test_normalization_layers.py::test_each_normalization_normalizes_over_its_axes"
)
class BatchNormalization(NormalizationLayerSurgery):
    """BatchNorm after every hidden Linear (BatchNorm1d) and conv layer (BatchNorm2d)."""

    key = "batch_normalization"
    Params = BatchNormParams
    params: BatchNormParams

    def for_linear(self, features: int) -> nn.Module:
        return nn.BatchNorm1d(features, eps=self.params.eps, momentum=self.params.momentum)

    def for_conv(self, channels: int) -> nn.Module:
        return nn.BatchNorm2d(channels, eps=self.params.eps, momentum=self.params.momentum)


@dataclass
class LayerNormParams:
    eps: float = param(1e-5, "ε added to the variance", gt=0.0)


@register(
    proof="tests/normalization/test_normalization_layers.py::test_each_normalization_normalizes_over_its_axes"
)
class LayerNormalization(NormalizationLayerSurgery):
    """LayerNorm over the units of every hidden Linear layer."""

    key = "layer_normalization"
    Params = LayerNormParams
    params: LayerNormParams
    on_conv = False

    def for_linear(self, features: int) -> nn.Module:
        return nn.LayerNorm(features, eps=self.params.eps)


@dataclass
class GroupNormParams:
    groups: int = param(4, "G: number of groups (must divide every width)", ge=1)
    eps: float = param(1e-5, "ε added to the variance", gt=0.0)


@register(
    proof="tests/normalization/test_normalization_layers.py::test_each_normalization_normalizes_over_its_axes"
)
class GroupNormalization(NormalizationLayerSurgery):
    """GroupNorm (G groups of units / channels) after every hidden Linear and conv layer."""

    key = "group_normalization"
    Params = GroupNormParams
    params: GroupNormParams

    def for_linear(self, features: int) -> nn.Module:
        if features % self.params.groups:
            raise ValueError(f"{features} units cannot be split into groups={self.params.groups}")
        return nn.GroupNorm(self.params.groups, features, eps=self.params.eps)

    for_conv = for_linear


@dataclass
class InstanceNormParams:
    affine: bool = param(True, "learn a scale and shift per channel")
    eps: float = param(1e-5, "ε added to the variance", gt=0.0)


@register(
    proof="tests/normalization/test_normalization_layers.py::test_each_normalization_normalizes_over_its_axes"
)
class InstanceNormalization(NormalizationLayerSurgery):
    """InstanceNorm2d after every conv layer with more than one output position (needs a CnnPolicy)."""

    key = "instance_normalization"
    Params = InstanceNormParams
    params: InstanceNormParams
    on_linear = False

    def convs_to_skip(self, agent: BaseAlgorithm) -> set[str]:
        """Conv layers whose output is 1×1: a single position has no spatial statistics."""
        skipped = set()
        for net in online_networks(agent).values():
            names = conv_names(net)
            if not names:
                continue
            space = agent.observation_space
            obs = agent.policy.obs_to_tensor(space.sample()[None].repeat(2, 0))[0]
            outputs = layer_outputs(agent, [net.get_submodule(n) for n in names], obs)
            skipped |= {n for n, out in zip(names, outputs) if out.shape[-2:].numel() == 1}
        return skipped

    def for_conv(self, channels: int) -> nn.Module:
        return nn.InstanceNorm2d(channels, eps=self.params.eps, affine=self.params.affine)
