"""Replacing weight layers: what the quantization and factorization surgeries share.

A :class:`LayerReplacement` finds the weight layers of every online network, asks its subclass
what to put in place of each, and puts it there in the online network and, with the same weights,
in its target. Layers are named by their *place*: the index of their online network and their name
in it (a target shares its online network's places).
"""

from __future__ import annotations

from typing import Any, ClassVar

from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.nets import transform_networks
from rlsurgery.nets.data import layer_feeds
from rlsurgery.nets.layout import online_networks, target_pairs
from rlsurgery.nets.modules import replace_modules
from rlsurgery.nets.size import weight_bytes
from rlsurgery.nets.surgery import NetworkSurgery

#: a layer's place: (index of its online network, its name there); a target shares its online's places
Place = tuple[int, str]


def is_weight_layer(module: nn.Module) -> bool:
    """A plain ``nn.Linear`` or ``nn.Conv2d`` (not a subclass with its own forward)."""
    return type(module) in (nn.Linear, nn.Conv2d)


def network_ends(agent: BaseAlgorithm, layers: dict[Place, nn.Module]) -> tuple[set[Place], set[Place]]:
    """(first, last) of ``layers`` in each network: those no other layer of their network feeds (the
    input layers), and those that feed no other (the heads: Q-values, logits, means, values),
    found from the data flow of one forward pass (:func:`~rlsurgery.nets.data.layer_feeds`)."""
    firsts: set[Place] = set()
    lasts: set[Place] = set()
    for i in {i for i, _ in layers}:
        places = [p for p in layers if p[0] == i]
        feeds = layer_feeds(agent, [layers[p] for p in places])
        fed = set().union(*feeds)
        firsts.update(p for k, p in enumerate(places) if k not in fed)
        lasts.update(p for k, p in enumerate(places) if not feeds[k])
    return firsts, lasts


class LayerReplacement(NetworkSurgery):
    """A network surgery that puts a new layer in place of some weight layers of every online network
    (and the same layer, with the same weights, in its target).

    Subclasses say which layers (:meth:`replaceable`), what to measure first (:meth:`prepare`, on
    the online networks before anything changes; skipped on ``load``, where only shapes matter) and
    what replaces a layer (:meth:`replacement`, ``None`` to keep it).
    """

    sb3_representable = False  # the new layers are not SB3's
    build_order = 95  # last: replace the layers the other network surgeries leave
    #: what the surgery puts in place of the layers (said when none is found)
    replaces_what: ClassVar[str] = "Linear or Conv2d layer"

    def replaceable(self, module: nn.Module) -> bool:
        return is_weight_layer(module)

    def prepare(self, agent: BaseAlgorithm, layers: dict[Place, nn.Module], replay: bool) -> Any:
        return None

    def replacement(self, module: nn.Module, place: Place, prepared: Any) -> nn.Module | None:
        raise NotImplementedError

    def candidates(self, agent: BaseAlgorithm) -> dict[Place, nn.Module]:
        """The replaceable layers of the online networks, by place, in definition order (none inside a
        module that wraps a layer of its own, ``wraps_layer = True``: a fake-quantized layer)."""
        found = {}
        for i, net in enumerate(online_networks(agent).values()):
            inside = [n for n, m in net.named_modules() if n and getattr(m, "wraps_layer", False)]
            for name, module in net.named_modules():
                if name and self.replaceable(module) and not any(name.startswith(q + ".") for q in inside):
                    found[(i, name)] = module
        return found

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        layers = self.candidates(agent)
        if not layers:
            raise IncompatibleSurgeryError(
                f"{self.key}: {type(agent).__name__}'s networks have no {self.replaces_what} to replace"
            )
        before = weight_bytes(agent)
        prepared = self.prepare(agent, layers, replay)
        onlines = list(online_networks(agent).values())
        index = {id(net): i for i, net in enumerate(onlines)}
        for online, target in target_pairs(agent):
            index[id(target)] = index[id(online)]
        replaced: list[str] = []

        def swap(net: nn.Module) -> None:
            i = index.get(id(net))
            if i is None:
                return
            new = {}
            for name, module in net.named_modules():
                if (i, name) in layers and self.replaceable(module):
                    layer = self.replacement(module, (i, name), prepared)
                    if layer is not None:
                        new[name] = layer
            names = replace_modules(net, lambda name, _m: name in new, lambda name, _m: new[name])
            if net is onlines[i]:
                replaced.extend(f"{i}:{n}" for n in names)

        transform_networks(agent, swap, copy_targets=True)
        self.state(agent).result.update(
            weight_bytes_before=before, weight_bytes_after=weight_bytes(agent), layers_replaced=replaced
        )
