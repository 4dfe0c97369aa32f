"""What the tensor-decomposition surgeries share: each layer of one kind replaced by a factorised
layer where that holds fewer numbers, the factors found by a maintained library (tensorly), and
the parameters counted before and after.

On ``load`` the factorised layers are rebuilt at their shapes (which depend only on the layer
shapes and the surgery's parameters) and the saved state fills them: no decomposition runs.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.nets.replacement import LayerReplacement, Place
from rlsurgery.pruning.neurons import parameter_count


def as_array(tensor: th.Tensor) -> np.ndarray:
    """``tensor`` as a float64 NumPy array (tensorly's NumPy backend, in double precision)."""
    return tensor.detach().cpu().double().numpy()


def as_tensor(array: Any, like: th.Tensor) -> th.Tensor:
    """A NumPy result back as a tensor of ``like``'s dtype and device."""
    return th.as_tensor(np.asarray(array), dtype=like.dtype, device=like.device)


def layer_size(module: nn.Module) -> int:
    """Parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


class LayerFactorization(LayerReplacement):
    """Replace each layer of :attr:`layer_type` by :meth:`factorised` where that is smaller.

    Subclasses give :meth:`build` (the empty factorised layer at its shapes, or ``None`` where the
    layer cannot be factorised) and :meth:`decompose` (fill it with the factors of the layer's weight).
    """

    build_order = 24  # with svd_decomposition: after structural edits and pruning, before quantization
    layer_type: ClassVar[type[nn.Module]] = nn.Conv2d

    def replaceable(self, module: nn.Module) -> bool:
        return type(module) is self.layer_type

    def build(self, module: nn.Module) -> nn.Module | None:
        raise NotImplementedError

    def decompose(self, module: nn.Module, layer: nn.Module) -> None:
        raise NotImplementedError

    def prepare(self, agent: BaseAlgorithm, layers: dict[Place, nn.Module], replay: bool) -> Any:
        plans = {}
        for place, module in layers.items():
            layer = self.build(module)
            if layer is not None and layer_size(layer) < layer_size(module):
                plans[place] = layer
        if not plans:
            raise IncompatibleSurgeryError(
                f"{self.key}: no {self.replaces_what} of {type(agent).__name__}'s networks would shrink "
                "with these ranks; lower them"
            )
        self.state(agent).result["parameters_before"] = parameter_count(agent)
        return {"plans": plans, "replay": replay}

    def replacement(self, module: nn.Module, place: Place, prepared: Any) -> nn.Module | None:
        plan = prepared["plans"].get(place)
        if plan is None:
            return None
        layer = self.build(module)  # a fresh one for each network: online and target hold their own
        layer.to(module.weight.device, module.weight.dtype)
        if not prepared["replay"]:
            found = prepared.setdefault("found", {})
            if place in found:  # the target's layer: the online one's factors, not a second decomposition
                layer.load_state_dict(found[place])
            else:
                self.decompose(module, layer)
                found[place] = layer.state_dict()
        return layer

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        super().apply(agent, replay)
        result = self.state(agent).result
        result["parameters_after"] = parameter_count(agent)
        result["factorised_layers"] = len(result["layers_replaced"])
