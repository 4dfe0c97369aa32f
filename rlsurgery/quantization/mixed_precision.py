"""Mixed precision: fp16 / bf16 weights for the layers that tolerate them, fp32 for the sensitive rest
(per-layer sensitivity as in HAWQ, Dong et al. 2019, https://arxiv.org/abs/1905.03696, here measured
directly rather than through the Hessian; for RL policies, QuaRL, Krishnan et al. 2019,
https://arxiv.org/abs/1910.01055)::

    layer error      e_ℓ = ‖ℓ_low(x) − ℓ(x)‖ / ‖ℓ(x)‖         (x: the layer's inputs on the states)
    output change    o_ℓ = ‖π(s; ℓ alone lowered) − π(s)‖ / ‖π(s)‖   (π: Q-values, logits or action)
    ℓ lowered  ⇔  max(e_ℓ, o_ℓ) ≤ tolerance

Both are measured on ``states`` of the agent's own states, one layer lowered at a time. A layer
off the acting network (a critic, a value head) has o_ℓ = 0, so its own error decides. A weight
beyond fp16's range (65504) or one whose products underflow shows up as a large error and keeps
the layer fp32. The chosen dtype per layer is kept in ``chosen`` for load; the report gives both
measures per layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.nets.data import layer_inputs, recent_observations
from rlsurgery.nets.layout import layout_of
from rlsurgery.nets.modules import modes_kept
from rlsurgery.nets.replacement import LayerReplacement, Place
from rlsurgery.quantization.layers import LowPrecision

DTYPES = {"float16": th.float16, "bfloat16": th.bfloat16}


def relative_change(reference: th.Tensor, changed: th.Tensor) -> float:
    """‖changed − reference‖ / ‖reference‖ (inf where ``changed`` is not finite)."""
    reference, changed = reference.double(), changed.double()
    if not bool(th.isfinite(changed).all()):
        return float("inf")
    return float(
        th.linalg.vector_norm(changed - reference) / th.linalg.vector_norm(reference).clamp_min(1e-30)
    )


@dataclass
class MixedPrecisionParams:
    dtype: Literal["float16", "bfloat16"] = param("float16", "the low precision of the tolerant layers")
    tolerance: float = param(
        1e-3, "a layer is lowered where its relative output error and policy change are at most this", gt=0.0
    )
    states: int = param(256, "states to measure on: the newest replay / rollout data, else a rollout", ge=1)
    chosen: list[str] = param(
        [],
        "filled in when applied: the dtype of every Linear / Conv2d layer of the online networks in "
        "order (float32 where kept; for load)",
    )


@register(proof="tests/quantization/test_mixed.py::test_mixed_precision_keeps_the_sensitive_layer_fp32")
class MixedPrecision(LayerReplacement):
    """fp16 / bf16 weights where lowering a layer alone moves its output and the policy's by at most
    ``tolerance``; fp32 elsewhere."""

    key = "mixed_precision"
    cost_note = (
        "PyTorch's fp16 GEMM on this CPU is several times slower than fp32 (7× at batch 256 in the "
        "compression benchmark), and every lowered layer casts its input and output; the per-layer "
        "measurement at insertion is two forward passes per layer"
    )
    Params = MixedPrecisionParams
    params: MixedPrecisionParams

    def sensitivities(self, agent: BaseAlgorithm, layers: dict[Place, nn.Module]) -> dict[Place, dict]:
        """Per layer: its own relative error ``layer_error`` and the acting output's relative change
        ``output_change`` when it alone runs in the low precision."""
        dtype = DTYPES[self.params.dtype]
        observations = recent_observations(agent, self.params.states, self.key)
        places = list(layers)
        inputs = layer_inputs(agent, [layers[p] for p in places], observations)
        layout, policy = layout_of(agent), agent.policy
        discrete = isinstance(agent.action_space, spaces.Discrete)
        measured = {}
        with th.no_grad(), modes_kept(policy):
            reference = layout.outputs(policy, observations, discrete)
            for place, x in zip(places, inputs):
                layer = layers[place]
                lowered = LowPrecision(layer, dtype)
                error = relative_change(layer(x), lowered(x))
                hook = layer.register_forward_hook(lambda _m, args, _out, low=lowered: low(args[0]))
                try:
                    change = relative_change(reference, layout.outputs(policy, observations, discrete))
                finally:
                    hook.remove()
                measured[place] = {"layer_error": error, "output_change": change}
        return measured

    def prepare(self, agent: BaseAlgorithm, layers: dict[Place, nn.Module], replay: bool) -> Any:
        places = list(layers)
        if replay and self.params.chosen:
            return dict(zip(places, self.params.chosen))
        measured = self.sensitivities(agent, layers)
        chosen = {
            p: self.params.dtype if max(m.values()) <= self.params.tolerance else "float32"
            for p, m in measured.items()
        }
        self.record_choice(agent, "chosen", [chosen[p] for p in places])
        names = [f"{i}:{name}" for i, name in places]
        self.state(agent).result.update(
            precision=dict(zip(names, chosen.values())),
            sensitivity={n: measured[p] for n, p in zip(names, places)},
            lowered_layers=sum(1 for d in chosen.values() if d != "float32"),
        )
        return chosen

    def replacement(self, module: nn.Module, place: Place, prepared: Any) -> nn.Module | None:
        dtype = prepared.get(place, "float32")
        return None if dtype == "float32" else LowPrecision(module, DTYPES[dtype])
