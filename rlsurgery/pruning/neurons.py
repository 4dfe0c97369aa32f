"""Structured pruning that physically shrinks the networks: hidden units, conv filters, whole layers.

Hu et al. 2016 (network trimming by activation, https://arxiv.org/abs/1607.03250); Li et al.
2017 (filters by L1 norm, https://arxiv.org/abs/1608.08710)::

    neuron_pruning      in every hidden layer, drop the fraction p of units with the smallest score:
                        mean |activation| on the agent's own states (criterion activation)
                        or ‖w_in‖₂ (criterion weight); the layer's rows and its readers' columns go
    filter_pruning      in every conv layer of a CNN feature extractor, drop the fraction p of output
                        channels with the smallest ‖filter‖₁; the next conv's input channels (or the
                        Linear after the flatten: C·H·W columns) shrink with them
    structured_pruning  remove whole hidden layers: per MLP, the ``layers`` hidden layers whose removal
                        (folded into their readers, see layer_removal) changes the MLP's outputs least
                        on the agent's states

The parameter counts really drop (the surgery's ``result`` reports before/after). On ``load`` the
shapes are rebuilt from the log (they follow from p, or from the recorded choice of layers)
and the saved weights fill them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import MAX_BATCH, param
from rlsurgery.nets import transform_networks
from rlsurgery.nets.data import layer_outputs, sample_observations
from rlsurgery.nets.layout import online_networks
from rlsurgery.nets.mlp import MLPStack, mlp_stacks, remove_hidden_layer
from rlsurgery.nets.surgery import NetworkSurgery
from rlsurgery.nets.units import activation_scores, resize_hidden_layers, weight_scores


def parameter_count(agent: BaseAlgorithm) -> int:
    """Parameters of the online networks."""
    return sum(p.numel() for net in online_networks(agent).values() for p in net.parameters())


class ShrinkingSurgery(NetworkSurgery):
    """Shared bookkeeping: parameter counts before and after, errors named after the surgery."""

    sb3_representable = False  # narrower layers than the policy_kwargs SB3 builds from

    build_order = 22  # with the structural edits, before wrappers (25) and masks (90)

    def shrink(self, agent: BaseAlgorithm, replay: bool) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define shrink()")

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        before = parameter_count(agent)
        try:
            self.shrink(agent, replay)
        except (TypeError, ValueError) as error:
            raise IncompatibleSurgeryError(f"{self.key}: {error}") from error
        result = self.state(agent).result
        result.update(parameters_before=before, parameters_after=parameter_count(agent))


@dataclass
class NeuronPruningParams:
    amount: float = param(0.5, "p: fraction of the units of each hidden layer to remove", gt=0.0, lt=1.0)
    criterion: Literal["activation", "weight"] = param(
        "activation", "mean |activation| on the agent's states, or the norm of the incoming weights"
    )
    samples: int = param(
        512, "observations to measure activations on (criterion activation)", ge=8, le=MAX_BATCH
    )
    seed: int = param(0, "seed of the measuring rollout")


@register(proof="tests/pruning/test_structured.py::test_neuron_pruning_drops_the_least_active_units")
class NeuronPruning(ShrinkingSurgery):
    """Remove the least important units of every hidden layer; the Linear layers really shrink."""

    key = "neuron_pruning"
    Params = NeuronPruningParams
    params: NeuronPruningParams

    def shrink(self, agent: BaseAlgorithm, replay: bool) -> None:
        if not any(mlp_stacks(net) for net in online_networks(agent).values()):
            raise TypeError(f"{type(agent).__name__}'s networks have no MLP hidden layer")
        scores = None
        if not replay:
            if self.params.criterion == "weight":
                scores = weight_scores(agent)
            else:
                observations = sample_observations(
                    agent, self.params.samples, self.params.seed, self.key, "agent"
                )
                scores = activation_scores(agent, observations)
        keep = 1 - self.params.amount
        self.state(agent).result["widths"] = resize_hidden_layers(
            agent, lambda s, i: max(1, round(keep * s.linear(i).out_features)), scores
        )


def cnn_parts(net: nn.Module) -> list[tuple[nn.Sequential, nn.Linear]]:
    """(conv Sequential, the Linear after its flatten) of every NatureCNN-style extractor in ``net``."""
    parts = []
    for module in net.modules():
        cnn, linear = getattr(module, "cnn", None), getattr(module, "linear", None)
        if (
            isinstance(cnn, nn.Sequential)
            and isinstance(linear, nn.Sequential)
            and isinstance(linear[0], nn.Linear)
        ) and any(isinstance(m, nn.Conv2d) for m in cnn):
            parts.append((cnn, linear))
    return parts


def keep_filters(cnn: nn.Sequential, linear: nn.Sequential, k: int, keep: th.Tensor) -> None:
    """Keep output channels ``keep`` of the k-th Conv2d of ``cnn``; shrink what reads them."""
    convs = [p for p, m in enumerate(cnn) if isinstance(m, nn.Conv2d)]
    conv = cnn[convs[k]]
    keep = keep.sort().values.to(conv.weight.device)
    for position in range(convs[k] + 1, len(cnn)):
        if any(p.numel() > 1 for p in cnn[position].parameters()) and not isinstance(
            cnn[position], nn.Conv2d
        ):
            raise TypeError(f"{type(cnn[position]).__name__} after conv {k} has per-channel parameters")
        if isinstance(cnn[position], nn.Conv2d):
            break
    cnn[convs[k]] = _conv_like(conv, conv.weight[keep], None if conv.bias is None else conv.bias[keep])
    if k + 1 < len(convs):
        nxt = cnn[convs[k + 1]]
        cnn[convs[k + 1]] = _conv_like(nxt, nxt.weight[:, keep], nxt.bias)
    else:
        reader = linear[0]
        spatial = reader.in_features // conv.out_channels
        columns = (keep[:, None] * spatial + th.arange(spatial, device=keep.device)[None, :]).flatten()
        new = nn.Linear(len(columns), reader.out_features, bias=reader.bias is not None).to(
            reader.weight.device
        )
        with th.no_grad():
            new.weight.copy_(reader.weight[:, columns])
            if reader.bias is not None:
                new.bias.copy_(reader.bias)
        linear[0] = new


def _conv_like(conv: nn.Conv2d, weight: th.Tensor, bias: th.Tensor | None) -> nn.Conv2d:
    new = nn.Conv2d(
        weight.shape[1],
        weight.shape[0],
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        bias=bias is not None,
        padding_mode=conv.padding_mode,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    with th.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


@dataclass
class FilterPruningParams:
    amount: float = param(0.5, "p: fraction of the filters of each conv layer to remove", gt=0.0, lt=1.0)


@register(proof="tests/pruning/test_structured.py::test_filter_pruning_shrinks_the_convolutions")
class FilterPruning(ShrinkingSurgery):
    """Remove the conv filters of smallest L1 norm from CNN feature extractors (CnnPolicy)."""

    key = "filter_pruning"
    Params = FilterPruningParams
    params: FilterPruningParams

    def shrink(self, agent: BaseAlgorithm, replay: bool) -> None:
        if not any(cnn_parts(net) for net in online_networks(agent).values()):
            raise TypeError(
                f"{type(agent).__name__}'s networks have no convolutional feature extractor "
                "(filter pruning needs a CnnPolicy; use neuron_pruning on MLPs)"
            )

        def prune_filters(net: nn.Module) -> None:
            for cnn, linear in cnn_parts(net):
                convs = [m for m in cnn if isinstance(m, nn.Conv2d)]
                for k in range(len(convs)):
                    conv = [m for m in cnn if isinstance(m, nn.Conv2d)][k]
                    n_keep = max(1, round((1 - self.params.amount) * conv.out_channels))
                    if replay:
                        keep = th.arange(n_keep)
                    else:
                        keep = conv.weight.detach().abs().sum(dim=(1, 2, 3)).topk(n_keep).indices.cpu()
                    keep_filters(cnn, linear, k, keep)

        transform_networks(agent, prune_filters)


@dataclass
class StructuredPruningParams:
    layers: int = param(1, "hidden layers to remove from each MLP", ge=1)
    samples: int = param(512, "observations to measure output changes on", ge=8, le=MAX_BATCH)
    seed: int = param(0, "seed of the measuring rollout")
    chosen: list[int] = param(
        [], "filled in when applied: the removed positions, per MLP in order (for load)"
    )


@register(proof="tests/pruning/test_structured.py::test_structured_pruning_removes_the_least_useful_layer")
class StructuredPruning(ShrinkingSurgery):
    """Remove whole hidden layers, those whose removal changes each MLP's outputs least."""

    key = "structured_pruning"
    Params = StructuredPruningParams
    params: StructuredPruningParams

    def shrink(self, agent: BaseAlgorithm, replay: bool) -> None:
        n = self.params.layers
        stacks = [s for net in online_networks(agent).values() for s in mlp_stacks(net)]
        short = [s.name for s in stacks if len(s.hidden) <= n]
        if short:
            raise TypeError(f"removing {n} hidden layer(s) would leave no hidden layer in {', '.join(short)}")
        if not replay or not self.params.chosen:
            inputs = _stack_inputs(
                agent,
                stacks,
                sample_observations(agent, self.params.samples, self.params.seed, self.key, "agent"),
            )
            chosen = []
            for stack, x in zip(stacks, inputs):
                chosen += _least_useful_layers(stack, x, n)
            self.record_choice(agent, "chosen", chosen)
        # the plan is keyed by stack name, the same in an online network and in its target
        plan = {s.name: self.params.chosen[k * n : (k + 1) * n] for k, s in enumerate(stacks)}

        def remove(net: nn.Module) -> None:
            for stack in mlp_stacks(net):
                for position in plan[stack.name]:
                    remove_hidden_layer(net, stack, position)

        transform_networks(agent, remove, copy_targets=False)


def _stack_inputs(agent: BaseAlgorithm, stacks: list[MLPStack], observations: th.Tensor) -> list[th.Tensor]:
    captured: dict[int, th.Tensor] = {}
    hooks = [
        s.seq.register_forward_pre_hook(lambda m, args: captured.__setitem__(id(m), args[0])) for s in stacks
    ]
    try:
        layer_outputs(agent, [], observations)
    finally:
        for hook in hooks:
            hook.remove()
    return [captured[id(s.seq)] for s in stacks]


def _stack_output(seq: nn.Sequential, readers: list[nn.Linear], external: bool, x: th.Tensor) -> th.Tensor:
    h = seq(x)
    return th.cat([r(h) for r in readers], dim=-1) if external else h


def _least_useful_layers(stack: MLPStack, x: th.Tensor, n: int) -> list[int]:
    """Greedily, ``n`` times: the hidden layer whose removal changes the stack's outputs least."""
    holder = copy.deepcopy(nn.ModuleList([stack.seq, *stack.output_readers]))
    reference = _stack_output(stack.seq, stack.output_readers, stack.external, x).detach()
    chosen = []
    with th.no_grad():
        for _ in range(n):
            base = MLPStack(stack.name, holder[0], stack.external, list(holder[1:]))
            errors = []
            for i in range(len(base.hidden)):
                trial = copy.deepcopy(holder)
                trial_stack = MLPStack(stack.name, trial[0], stack.external, list(trial[1:]))
                remove_hidden_layer(trial, trial_stack, i)
                out = _stack_output(trial_stack.seq, trial_stack.output_readers, stack.external, x)
                errors.append((out - reference).pow(2).mean().item())
            best = min(range(len(errors)), key=errors.__getitem__)
            remove_hidden_layer(holder, base, best)
            holder = nn.ModuleList([base.seq, *base.output_readers])
            chosen.append(best)
    return chosen
