"""Post-training quantization: int8 weights and int8 activations, their ranges calibrated on the agent's
own states (Jacob et al. 2018, https://arxiv.org/abs/1712.05877; for RL policies, QuaRL: Krishnan et
al. 2019, https://arxiv.org/abs/1910.01055)::

    W ≈ s_r · q_w,   s_r = max_j |w_rj| / 127           (per output row, symmetric; or one
                                                         s = max |w| / 127 with weight_scales=tensor)
    x ≈ s (q_x − z), [lo, hi] observed on calibration   (per layer, affine)
    y = s s_r · (q_x − z)·q_wᵀ + b                       (int32 accumulation)

The range of every layer's input is observed on ``states`` states (min/max or percentiles) of the
float model; in the input layers of each network, each observation feature is first divided by its
largest magnitude e_j over the states and the weight's columns multiplied by it (``equalize``, the
default:
x·Wᵀ = (x/e)·(W diag e)ᵀ; without it, Pendulum's θ̇ ∈ [−8, 8] leaves cos θ and sin θ steps of 0.06
in a shared range). A layer the model trained with ``quantization_aware_training`` keeps the range
learnt in training. The output layers stay fp32 unless ``keep_heads=False``: a Q-network's action
gaps are often far smaller than int8's error on each output (on the LunarLander DQN of the
benchmark, half the greedy actions flip when the 256 → 4 head is int8, 3% when only the hidden
layers are). Linear layers then run on PyTorch's int8 GEMM; see
:mod:`rlsurgery.quantization` for Conv2d.
"""

from __future__ import annotations

from typing import Any

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.nets.replacement import Place, is_weight_layer, network_ends
from rlsurgery.quantization.base import HeadKeeping, float_layer, input_ranges
from rlsurgery.quantization.calibration import CalibrationParams
from rlsurgery.quantization.layers import FakeQuantized, int8_layer


@register(proof="tests/quantization/test_int8.py::test_post_training_quantization_stores_int8_and_calibrates")
class PostTrainingQuantization(HeadKeeping):
    """int8 weights and activations, the activation ranges calibrated on the agent's own states."""

    key = "post_training_quantization"
    Params = CalibrationParams
    params: CalibrationParams

    def replaceable(self, module: nn.Module) -> bool:
        return is_weight_layer(module) or (isinstance(module, FakeQuantized) and module.code == "int8")

    def prepare(self, agent: BaseAlgorithm, layers: dict[Place, nn.Module], replay: bool) -> Any:
        plain = {p: m for p, m in layers.items() if not isinstance(m, FakeQuantized)}
        p = self.params
        if not plain:
            return {}
        inputs = network_ends(agent, plain)[0] if p.equalize else set()  # where observations come in
        inputs = {place for place in inputs if isinstance(plain[place], nn.Linear)}
        if replay:  # on load only the shapes matter: the saved state fills them
            return {place: (0.0, 0.0, th.ones(plain[place].in_features)) for place in inputs}
        return input_ranges(agent, plain, p.states, self.key, p.observer, p.percentile, inputs)

    def replacement(self, module: nn.Module, place: Place, prepared: Any) -> nn.Module:
        measured = prepared.get(place) if not isinstance(module, FakeQuantized) else None
        scale = measured[2] if measured is not None and len(measured) == 3 else None
        layer = int8_layer(
            float_layer(module),
            static=True,
            input_scale=scale,
            per_tensor=self.params.weight_scales == "tensor",
        )
        if isinstance(module, FakeQuantized):
            layer.input_range.load_state_dict(module.input_range.state_dict())
        elif measured is not None:
            layer.input_range.set(*measured[:2])
        return layer
