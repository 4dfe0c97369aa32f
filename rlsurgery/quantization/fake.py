"""What quantization-aware training, binary and ternary networks share: every chosen layer wrapped in
:class:`~rlsurgery.quantization.layers.FakeQuantized`, so that training goes on with quantized weights
in the forward pass and straight-through gradients to the latent fp32 weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import param
from rlsurgery.nets.replacement import LayerReplacement, Place, network_ends
from rlsurgery.quantization.layers import FakeQuantized, WeightCode


@dataclass
class LowBitParams:
    keep_ends: bool = param(
        True,
        "the first and last weight layers of each network (those fed by no other, those feeding no other) "
        "stay fp32, as the BNN and TWN papers keep them",
    )


class FakeQuantization(LayerReplacement):
    """Wrap layers in ``FakeQuantized(layer, code)``; :attr:`code` is the weight code."""

    code: ClassVar[WeightCode] = "int8"
    repeatable = False
    cost_note = (
        "every forward pass quantizes the latent weights anew (row scales, rounding, the "
        "straight-through term; QAT also each input's range and code) and then runs the fp32 "
        "product: simulated low precision, with no low-bit kernel to make it cheaper"
    )

    def candidates(self, agent: BaseAlgorithm) -> dict[Place, nn.Module]:
        layers = super().candidates(agent)
        if getattr(self.params, "keep_ends", False):
            firsts, lasts = network_ends(agent, layers)
            kept = {p: m for p, m in layers.items() if p not in firsts | lasts}
            if layers and not kept:
                raise IncompatibleSurgeryError(
                    f"{self.key}: every weight layer of {type(agent).__name__}'s networks is a first or last "
                    "layer; pass keep_ends=False to quantize them too"
                )
            layers = kept
        return layers

    def replacement(self, module: nn.Module, place: Place, prepared: Any) -> nn.Module:
        return FakeQuantized(module, self.code)
