"""What the quantization surgeries share beyond :mod:`rlsurgery.nets.replacement`: the fp32 layer behind
a fake-quantized one, the input ranges calibrated on the agent's own states, and the output layers
left in fp32."""

from __future__ import annotations

from typing import Literal

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.nets.data import layer_inputs, recent_observations
from rlsurgery.nets.replacement import LayerReplacement, Place, network_ends
from rlsurgery.quantization.layers import FakeQuantized

Observer = Literal["minmax", "percentile"]


def float_layer(module: nn.Module) -> nn.Module:
    """The fp32 layer behind ``module``: the layer an int8 ``FakeQuantized`` trains, else itself."""
    return module.layer if isinstance(module, FakeQuantized) else module


def input_ranges(
    agent: BaseAlgorithm,
    layers: dict[Place, nn.Module],
    states: int,
    key: str,
    observer: Observer = "minmax",
    percentile: float = 99.99,
    equalize: set[Place] | frozenset[Place] = frozenset(),
) -> dict[Place, tuple]:
    """(low, high) of every layer's input over ``states`` of the agent's own states (the newest replay
    or rollout data, else a rollout of its policy): the min and max, or the ``percentile`` and
    100 − ``percentile`` percentiles (which ignore rare outliers). For the places in ``equalize``, the
    range is of x / s, s_j = max |x_j| over the states (one scale per input feature of a Linear
    layer, 1 for a feature that is always 0), and the entry is (low, high, s)."""
    observations = recent_observations(agent, states, key)
    places = list(layers)
    inputs = layer_inputs(agent, [layers[p] for p in places], observations)
    if len(inputs) != len(places):
        raise IncompatibleSurgeryError(f"{key}: some layers were not reached by a forward pass of the policy")
    ranges = {}
    for place, x in zip(places, inputs):
        x = x.detach().float()
        scale = None
        if place in equalize and x.dim() == 2:  # a Linear's input: (batch, features)
            scale = x.abs().amax(0)
            scale = th.where(scale > 0, scale, th.ones_like(scale))
            x = x / scale
        values = x.flatten()
        if observer == "percentile":
            q = th.tensor([100.0 - percentile, percentile], dtype=values.dtype) / 100.0
            sample = values if values.numel() <= 2**24 else values[th.randperm(values.numel())[: 2**24]]
            low, high = th.quantile(sample, q).tolist()
        else:
            low, high = values.min().item(), values.max().item()
        ranges[place] = (low, high) if scale is None else (low, high, scale)
    return ranges


class HeadKeeping(LayerReplacement):
    """With ``keep_heads`` (a parameter), the output layers of every network (those that feed no other
    layer: Q-values, logits, action means, values) are left in fp32. Layers already trained for int8
    (``quantization_aware_training``'s) are converted whatever the parameter says."""

    def candidates(self, agent: BaseAlgorithm) -> dict[Place, nn.Module]:
        layers = super().candidates(agent)
        if not getattr(self.params, "keep_heads", False) or not layers:
            return layers
        _, heads = network_ends(agent, layers)
        kept = {p: m for p, m in layers.items() if p not in heads or isinstance(m, FakeQuantized)}
        if not kept:
            raise IncompatibleSurgeryError(
                f"{self.key}: every weight layer of {type(agent).__name__}'s networks is an output layer; "
                "pass keep_heads=False to quantize them too"
            )
        return kept
