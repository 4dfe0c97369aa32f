"""Weight masks through ``torch.nn.utils.prune``: the one way network surgeries zero weights.

A masked layer keeps ``weight_orig`` (the trained parameter, same tensor object, so
optimizers need no rebuild) and a ``weight_mask`` buffer; its ``weight`` is recomputed as
``weight_orig * weight_mask`` before every forward pass. So masks hold through training
updates, the mask is part of the state dict (``save``/``load`` keep it once the surgery is
replayed from the provenance log), and masking again multiplies the masks.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn
from torch.nn.utils import prune

from rlsurgery.nets.layout import online_networks, target_pairs

#: the pruning surgeries, which mask the same weights (those that reparametrize weights conflict)
PRUNING_KEYS = (
    "weight_pruning",
    "magnitude_pruning",
    "magnitude_based_pruning",
    "n_m_sparsity",
    "block_sparsity",
    "gradual_magnitude_pruning",
)

#: layers whose weights can be masked
PRUNABLE = (nn.Linear, nn.Conv2d)


#: output layers by name: actor-critic heads, SAC/TD3 actor heads
OUTPUT_NAMES = ("action_net", "value_net", "mu", "log_std")
#: Sequential heads whose last layer is an output layer: DQN's Q head, SAC/TD3 critics, TD3's actor
OUTPUT_HEADS = ("q_net", "quantile_net", "qf0", "qf1", "qf2", "mu")


def output_layer_names(net: nn.Module) -> set[str]:
    """Names (within ``net``) of its output layers: Q-values, action logits / means, values."""
    names = {
        n for n, m in net.named_modules() if isinstance(m, PRUNABLE) and n.split(".")[-1] in OUTPUT_NAMES
    }
    for name, module in net.named_modules():
        if isinstance(module, nn.Sequential) and name.split(".")[-1] in OUTPUT_HEADS:
            last = [f"{name}.{c}" for c, sub in module.named_children() if isinstance(sub, PRUNABLE)][-1:]
            names.update(last)
    return names


def prunable_layers(model: BaseAlgorithm, include_output: bool = True) -> list[tuple[str, nn.Module]]:
    """``(role.path, layer)`` for every Linear / Conv2d of the online networks, in order.

    :param include_output: also the output layers (see :func:`output_layer_names`)
    """
    layers = []
    for role, net in online_networks(model).items():
        outputs = set() if include_output else output_layer_names(net)
        layers += [
            (f"{role}.{name}" if name else role, m)
            for name, m in net.named_modules()
            if isinstance(m, PRUNABLE) and name not in outputs
        ]
    return layers


def apply_mask(layer: nn.Module, mask: th.Tensor) -> None:
    """Mask ``layer.weight`` (combined with an existing mask)."""
    prune.custom_from_mask(layer, "weight", mask.to(device=layer.weight.device, dtype=layer.weight.dtype))


def is_masked(layer: nn.Module) -> bool:
    """Whether ``layer.weight`` is masked."""
    return prune.is_pruned(layer) and hasattr(layer, "weight_mask")


def sync_target_masks(model: BaseAlgorithm) -> None:
    """Give every target network the masks of its online network (same layer order)."""
    for online, target in target_pairs(model):
        online_layers = [m for m in online.modules() if isinstance(m, PRUNABLE)]
        target_layers = [m for m in target.modules() if isinstance(m, PRUNABLE)]
        for a, b in zip(online_layers, target_layers):
            if is_masked(a):
                if is_masked(b):
                    b.weight_mask.copy_(a.weight_mask)
                else:
                    apply_mask(b, a.weight_mask.clone())
                b.weight_orig.data.mul_(b.weight_mask)


def effective_weight(layer: nn.Module) -> th.Tensor:
    """The weight the layer computes with: ``weight_orig * weight_mask`` when masked (the cached
    ``layer.weight`` is only refreshed at the next forward pass, e.g. not right after ``load``)."""
    if is_masked(layer):
        return (layer.weight_orig * layer.weight_mask).detach()
    return layer.weight.detach()


def sparsity(layers: Iterable[nn.Module]) -> float:
    """Fraction of exactly-zero entries over the effective weights of ``layers``."""
    zeros = total = 0
    for layer in layers:
        weight = effective_weight(layer)
        zeros += int((weight == 0).sum())
        total += weight.numel()
    return zeros / max(total, 1)


def smallest_magnitude_masks(weights: list[th.Tensor], amount: float) -> list[th.Tensor]:
    """Masks that prune exactly ``round(amount · N)`` of the smallest |w| over all ``weights`` together."""
    return lowest_score_masks([w.detach().abs() for w in weights], amount)


def lowest_score_masks(scores: list[th.Tensor], amount: float) -> list[th.Tensor]:
    """Masks that prune exactly ``round(amount · N)`` entries of lowest score over all ``scores`` together
    (entries already pruned should score −inf so that they stay pruned)."""
    flat = th.cat([s.detach().flatten() for s in scores])
    k = round(amount * flat.numel())
    keep = th.ones_like(flat)
    if k > 0:
        keep[th.topk(flat, k, largest=False).indices] = 0.0
    masks, start = [], 0
    for s in scores:
        masks.append(keep[start : start + s.numel()].view_as(s).clone())
        start += s.numel()
    return masks


def trained_weight(layer: nn.Module) -> nn.Parameter:
    """The parameter the optimizer updates for ``layer.weight`` (``weight_orig`` when masked)."""
    return layer.weight_orig if is_masked(layer) else layer.weight
