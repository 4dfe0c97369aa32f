"""The size of a model's weights as deployed: bytes of the online networks' parameters and buffers.

A layer that knows its deployed size (the quantized layers: int8 codes, packed binary or ternary
bits) says it through a ``weight_bytes()`` method, and is counted by it, its submodules included;
every other tensor counts its ``numel × element_size``. Targets are not counted, a tensor shared
by two networks counts once, and non-persistent buffers (caches) do not count.
"""

from __future__ import annotations

from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.nets.layout import online_networks


def module_weight_bytes(root: nn.Module, seen: set[int] | None = None) -> int:
    """Bytes of ``root``'s parameters and persistent buffers, quantized layers at their deployed size."""
    seen = set() if seen is None else seen
    if id(root) in seen:
        return 0
    seen.add(id(root))
    own = getattr(root, "weight_bytes", None)
    if callable(own):
        seen.update(id(t) for t in (*root.parameters(), *root.buffers()))
        return int(own())
    total = 0
    transient = getattr(root, "_non_persistent_buffers_set", set())
    tensors = [*root.named_parameters(recurse=False), *root.named_buffers(recurse=False)]
    for name, tensor in tensors:
        if tensor is None or id(tensor) in seen or name in transient:
            continue
        seen.add(id(tensor))
        total += tensor.numel() * tensor.element_size()
    return total + sum(module_weight_bytes(child, seen) for child in root.children())


def weight_bytes(model: BaseAlgorithm) -> int:
    """Deployed bytes of the online networks of ``model`` (see the module docstring).

    >>> from stable_baselines3 import DQN
    >>> weight_bytes(DQN("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[8])))  # (4·8+8+8·2+2)·4
    232
    """
    seen: set[int] = set()
    return sum(module_weight_bytes(net, seen) for net in online_networks(model).values())
