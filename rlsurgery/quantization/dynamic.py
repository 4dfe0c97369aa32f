"""Dynamic quantization: int8 weights, activations quantized at run time, one scale per sample::

    W ≈ s_r · q_w,   s_r = max_j |w_rj| / 127;   s_x = max_j |x_j| / 127,  q_x = round(x / s_x)
    y = s_x s_r · q_x·q_wᵀ + b

No calibration: the input's scale is measured on each input as it comes (Krishnan et al. 2019,
QuaRL, https://arxiv.org/abs/1910.01055, compare it with post-training and quantization-aware
training on RL policies). A layer trained with ``quantization_aware_training`` is quantized from its
latent weights. The output layers stay fp32 unless ``keep_heads=False`` (see
``post_training_quantization``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from rlsurgery.catalog import register
from rlsurgery.nets.replacement import Place, is_weight_layer
from rlsurgery.quantization.base import HeadKeeping, float_layer
from rlsurgery.quantization.calibration import HeadParams
from rlsurgery.quantization.layers import FakeQuantized, int8_layer


@register(proof="tests/quantization/test_int8.py::test_dynamic_quantization_scales_each_input")
class DynamicQuantization(HeadKeeping):
    """int8 weights; each input quantized to int8 with its own scale when the layer runs."""

    key = "dynamic_quantization"
    Params = HeadParams
    params: HeadParams

    def replaceable(self, module: nn.Module) -> bool:
        return is_weight_layer(module) or (isinstance(module, FakeQuantized) and module.code == "int8")

    def replacement(self, module: nn.Module, place: Place, prepared: Any) -> nn.Module:
        return int8_layer(float_layer(module), static=False, per_tensor=self.params.weight_scales == "tensor")
