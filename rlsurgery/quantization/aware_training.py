"""Quantization-aware training: training goes on with int8 weights and inputs in the forward pass
(Jacob et al. 2018, https://arxiv.org/abs/1712.05877; QuaRL, Krishnan et al. 2019,
https://arxiv.org/abs/1910.01055, finds it often beats post-training quantization on RL policies)::

    forward:   y = layer(x̂, Ŵ),  Ŵ = s_r · round(W / s_r),  x̂ = s (round(x / s) + z − z)
    backward:  ∂L/∂W ≈ ∂L/∂Ŵ,  ∂L/∂x ≈ ∂L/∂x̂   (straight-through estimator)

Each layer's input range starts from a calibration on the agent's own states and then follows an
exponential moving average (momentum 0.01) of the batches trained on. Apply it to a trained model
(``rls.operate``, or ``at_step`` during training), train on with ``learn``, then convert with
``post_training_quantization`` (the learnt ranges are kept) for the int8 model. The output layers
stay fp32 unless ``keep_heads=False`` (see ``post_training_quantization``).
"""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.nets.replacement import Place
from rlsurgery.quantization.base import HeadKeeping, input_ranges
from rlsurgery.quantization.calibration import CalibrationParams
from rlsurgery.quantization.fake import FakeQuantization
from rlsurgery.quantization.layers import FakeQuantized


@register(
    proof="tests/quantization/test_fake.py::test_quantization_aware_training_trains_latent_weights_on_int8"
)
class QuantizationAwareTraining(HeadKeeping, FakeQuantization):
    """Train on with int8 fake-quantized weights and inputs (straight-through), ready for int8."""

    key = "quantization_aware_training"
    code = "int8"
    Params = CalibrationParams
    params: CalibrationParams

    def prepare(self, agent: BaseAlgorithm, layers: dict[Place, nn.Module], replay: bool) -> Any:
        if replay:
            return {}
        p = self.params
        return input_ranges(agent, layers, p.states, self.key, p.observer, p.percentile)

    def replacement(self, module: nn.Module, place: Place, prepared: Any) -> nn.Module:
        layer = FakeQuantized(module, self.code)
        if place in prepared:
            layer.input_range.set(*prepared[place])
        return layer
