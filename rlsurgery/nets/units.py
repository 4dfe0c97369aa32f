"""Hidden units: score them on data, and resize hidden layers (narrow by score, widen by Net2Net).

Used by ``neuron_pruning`` (drop the least active units) and ``width_scaling`` (widen
function-preservingly, or narrow through the same unit scores).
"""

from __future__ import annotations

from collections.abc import Callable

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.nets import transform_networks
from rlsurgery.nets.data import layer_outputs
from rlsurgery.nets.layout import online_networks
from rlsurgery.nets.mlp import MLPStack, keep_units, mlp_stacks, widen_units

#: (stack name, hidden index) -> one score per unit; a stack has the same name in an online network
#: and in its target, whose units correspond
UnitScores = dict[tuple[str, int], th.Tensor]


def activation_scores(agent: BaseAlgorithm, observations: th.Tensor) -> UnitScores:
    """Mean |activation| of every hidden unit of the online networks' MLP stacks on ``observations``
    (the output of each hidden layer's block, i.e. after its activation)."""
    places, modules = [], []
    for net in online_networks(agent).values():
        for stack in mlp_stacks(net):
            for i in range(len(stack.hidden)):
                places.append((stack.name, i))
                modules.append(stack.block(i)[-1])
    outputs = layer_outputs(agent, modules, observations)
    if len(outputs) != len(modules):
        raise RuntimeError("some hidden layers were not reached by the forward pass")
    return {place: out.abs().reshape(-1, out.shape[-1]).mean(0) for place, out in zip(places, outputs)}


def weight_scores(agent: BaseAlgorithm) -> UnitScores:
    """‖w_i‖₂ of the incoming weights of every hidden unit of the online networks."""
    scores = {}
    for net in online_networks(agent).values():
        for stack in mlp_stacks(net):
            for i in range(len(stack.hidden)):
                layer = stack.linear(i)
                norm = layer.weight.detach().pow(2).sum(1)
                if layer.bias is not None:
                    norm = norm + layer.bias.detach().pow(2)
                scores[(stack.name, i)] = norm.sqrt()
    return scores


def resize_hidden_layers(
    agent: BaseAlgorithm,
    width_of: Callable[[MLPStack, int], int],
    scores: UnitScores | None,
    seed: int = 0,
) -> dict[str, list[int]]:
    """Give every hidden layer of every MLP stack the width ``width_of(stack, i)``.

    Narrowing keeps the units of highest score (the first ones when ``scores`` is None, as on
    ``load``, where only the shapes matter), the same units in a target network as in its
    online network; widening copies units (:func:`~rlsurgery.nets.mlp.widen_units`,
    function-preserving for each network, targets included, which keep their own weights).
    Returns the new widths by stack.
    """
    widths: dict[str, list[int]] = {}

    def resize(net: th.nn.Module) -> None:
        # the same draws for every network: a target copies the same units as its online network
        generator = th.Generator().manual_seed(seed)
        for stack in mlp_stacks(net):
            for i in range(len(stack.hidden)):
                current, wanted = stack.linear(i).out_features, width_of(stack, i)
                if wanted < current:
                    unit_scores = (scores or {}).get((stack.name, i))
                    if unit_scores is None:
                        keep = th.arange(wanted)
                    else:
                        keep = unit_scores.topk(wanted).indices.cpu()
                    keep_units(net, stack, i, keep)
                elif wanted > current:
                    widen_units(net, stack, i, wanted, generator)
            widths[stack.name] = stack.widths

    transform_networks(agent, resize, copy_targets=False)
    return widths
