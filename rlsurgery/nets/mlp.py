"""Structural edits of the MLPs inside SB3 networks: deepen, shorten, widen, narrow, rewire.

SB3 builds its fully connected parts with ``create_mlp``: an ``nn.Sequential`` of
``Linear`` layers each followed by an activation. A :class:`MLPStack` is one such
Sequential seen as *hidden layers* plus the ``Linear`` layers that *read* its last hidden
output: the Sequential's own last ``Linear`` (DQN's Q head, SAC/TD3 critics, TD3's actor),
or heads outside it (PPO/A2C ``mlp_extractor.policy_net`` → ``action_net``,
``mlp_extractor.value_net`` → ``value_net``; SAC's ``latent_pi`` → ``mu``, ``log_std``).

The edits are exact operations on weights, written once here and used by the layer,
width and neuron surgeries:

* :func:`widen_units` (Net2WiderNet, Chen et al. 2016, https://arxiv.org/abs/1511.05641):
  new units copy existing ones; the readers' weights of each copied unit are split among
  its copies, so the function is unchanged;
* :func:`keep_units`: keep a subset of a hidden layer's units (rows of its ``Linear``,
  columns of its readers): the network shrinks physically;
* :func:`insert_identity_layer` (Net2DeeperNet): a new ``Linear`` with W = I, b = 0
  after a hidden layer (followed by the same activation when that activation is
  idempotent, e.g. ReLU: ReLU(I·ReLU(x)) = ReLU(x));
* :func:`remove_hidden_layer`: drop a hidden layer and fold its ``Linear`` into its
  readers (W_r ← W_r·W_i, b_r ← b_r + W_r·b_i), exact when the dropped activation acted
  as the identity on the data.

Only top-level ``Linear`` layers of a stack are edited: blocks wrapped by another surgery
(residual, dense …) are opaque to later structural edits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch as th
from torch import nn
from torch.nn.utils import parametrize

#: Sequentials whose last Linear is hidden: levels up to the module owning their readers, the readers
EXTERNAL_READERS = {
    "policy_net": (2, ("action_net",)),
    "value_net": (2, ("value_net",)),
    "latent_pi": (1, ("mu", "log_std")),
}
#: activations with f(f(x)) = f(x) on f's outputs: an identity layer followed by them preserves outputs
IDEMPOTENT = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Identity)


@dataclass
class MLPStack:
    """One SB3 MLP Sequential: where its hidden ``Linear`` layers sit and who reads its output."""

    name: str
    """dotted path of the Sequential within its network"""
    seq: nn.Sequential
    external: bool
    """whether the last hidden layer is read by heads outside the Sequential (else by its last Linear)"""
    output_readers: list[nn.Linear] = field(default_factory=list)
    """the heads outside the Sequential reading its last hidden layer (``external`` stacks)"""

    @property
    def linears(self) -> list[int]:
        return [p for p, m in enumerate(self.seq) if type(m) is nn.Linear]

    @property
    def hidden(self) -> list[int]:
        """positions (in ``seq``) of the hidden Linear layers"""
        return self.linears if self.external else self.linears[:-1]

    def readers(self, i: int) -> list[nn.Linear]:
        """The Linear layers that read hidden layer ``i``'s output (``i`` counts hidden layers)."""
        positions = self.linears
        k = self.hidden[i]
        after = [p for p in positions if p > k]
        if after:
            return [self.seq[after[0]]]
        return self.output_readers

    def linear(self, i: int) -> nn.Linear:
        """Hidden layer ``i``'s Linear."""
        return self.seq[self.hidden[i]]

    def block(self, i: int) -> list[nn.Module]:
        """Hidden layer ``i``: its Linear and the modules after it up to the next Linear (activation …)."""
        start = self.hidden[i]
        after = [p for p in self.linears if p > start]
        return list(self.seq)[start : after[0] if after else len(self.seq)]

    def activation(self, i: int) -> nn.Module | None:
        """The first module after hidden layer ``i``'s Linear (its activation), if any."""
        block = self.block(i)
        return block[1] if len(block) > 1 else None

    @property
    def widths(self) -> list[int]:
        return [self.linear(i).out_features for i in range(len(self.hidden))]


def mlp_stacks(net: nn.Module) -> list[MLPStack]:
    """Every SB3 MLP Sequential inside ``net`` with at least one hidden layer, in definition order.

    A Sequential qualifies when it starts with a plain ``nn.Linear``; its top-level plain
    ``nn.Linear`` layers are its layers.
    """
    stacks = []
    for name, module in net.named_modules():
        if not isinstance(module, nn.Sequential) or not len(module) or type(module[0]) is not nn.Linear:
            continue
        short = name.split(".")[-1]
        if short in EXTERNAL_READERS:
            up, heads = EXTERNAL_READERS[short]
            owner_path = ".".join(name.split(".")[:-up])
            owner = net.get_submodule(owner_path) if owner_path else net
            readers = [getattr(owner, h, None) for h in heads]
            readers = [r for r in readers if isinstance(r, nn.Linear)]
            if readers:
                stacks.append(MLPStack(name, module, True, readers))
        elif sum(type(m) is nn.Linear for m in module) >= 2:
            stacks.append(MLPStack(name, module, False))
    return stacks


def hidden_layers(net: nn.Module) -> Iterator[tuple[MLPStack, int]]:
    """(stack, i) for every hidden layer of every stack of ``net``."""
    for stack in mlp_stacks(net):
        for i in range(len(stack.hidden)):
            yield stack, i


def check_editable(stack: MLPStack, i: int, what: str) -> None:
    """Refuse to edit layers whose weights are masked or reparametrized (pruning, weight norm …), or
    whose block holds modules with parameters (normalization, gates, attention) that the edit would
    not carry along."""
    where = stack.name or "the network"
    for layer in [stack.linear(i), *stack.readers(i)]:
        if parametrize.is_parametrized(layer) or hasattr(layer, "weight_orig"):
            raise TypeError(
                f"{what}: layer in {where} is masked or reparametrized; "
                "apply structural surgeries before pruning / normalization surgeries"
            )
    for module in stack.block(i)[1:]:
        if any(p.numel() > 1 for p in module.parameters()):
            raise TypeError(
                f"{what}: {type(module).__name__} after hidden layer {i} of {where} has parameters of "
                "its own; apply structural surgeries before the ones that insert modules"
            )


def _replace_linear(old: nn.Linear, weight: th.Tensor, bias: th.Tensor | None) -> nn.Linear:
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    new = new.to(device=old.weight.device, dtype=old.weight.dtype)
    with th.no_grad():
        new.weight.copy_(weight)
        if bias is not None:
            new.bias.copy_(bias)
    return new


def _rows(layer: nn.Linear, units: th.Tensor) -> nn.Linear:
    """A copy of ``layer`` computing only output units ``units`` (in that order)."""
    return _replace_linear(layer, layer.weight[units], None if layer.bias is None else layer.bias[units])


def swap(net: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Put ``new`` wherever ``old`` sits in ``net`` (a layer may be reachable by one path only), plain
    lists that refer to it included (SB3's critics call their Q networks through ``q_networks``)."""
    for module in net.modules():
        for child_name, child in module.named_children():
            if child is old:
                setattr(module, child_name, new)
                for owner in net.modules():
                    for value in vars(owner).values():
                        if isinstance(value, list) and any(item is old for item in value):
                            value[:] = [new if item is old else item for item in value]
                return
    raise KeyError("module not found in the network")


def _replace_readers(net: nn.Module, stack: MLPStack, old: list[nn.Linear], new: list[nn.Linear]) -> None:
    for a, b in zip(old, new):
        swap(net, a, b)
    stack.output_readers = [new[old.index(r)] if r in old else r for r in stack.output_readers]


def keep_units(net: nn.Module, stack: MLPStack, i: int, keep: th.Tensor) -> None:
    """Keep only units ``keep`` (indices) of hidden layer ``i``: its Linear's rows, its readers' columns.

    Modules between the Linear and its readers must be element-wise (activations, dropout);
    modules with per-unit parameters (normalization, PReLU with one slope per unit) are refused.
    """
    check_editable(stack, i, "keep_units")
    layer = stack.linear(i)
    keep = keep.sort().values.to(layer.weight.device)
    readers = stack.readers(i)
    new_readers = [_replace_linear(r, r.weight[:, keep], r.bias) for r in readers]
    swap(net, layer, _rows(layer, keep))
    _replace_readers(net, stack, readers, new_readers)


def widen_units(net: nn.Module, stack: MLPStack, i: int, width: int, generator: th.Generator) -> None:
    """Net2WiderNet: hidden layer ``i`` grows to ``width`` units with the function unchanged.

    New unit j copies unit g(j) (drawn uniformly); each original unit's outgoing weights are
    split among its copies with random positive shares summing to 1, so the copies receive
    different gradients and can diverge while the outputs stay the same.
    """
    check_editable(stack, i, "widen_units")
    layer = stack.linear(i)
    h = layer.out_features
    if width < h:
        raise ValueError(f"widen_units: width {width} < current {h}")
    source = th.cat([th.arange(h), th.randint(0, h, (width - h,), generator=generator)])
    shares = th.rand(width, generator=generator, dtype=th.float64) + 0.5
    totals = th.zeros(h, dtype=th.float64).index_add_(0, source, shares)
    fractions = (shares / totals[source]).to(device=layer.weight.device, dtype=layer.weight.dtype)
    idx = source.to(layer.weight.device)
    readers = stack.readers(i)
    new_readers = [_replace_linear(r, r.weight[:, idx] * fractions, r.bias) for r in readers]
    swap(net, layer, _rows(layer, idx))
    _replace_readers(net, stack, readers, new_readers)


def insert_identity_layer(stack: MLPStack, i: int, activation: nn.Module | None) -> None:
    """A new Linear (W = I, b = 0) right after hidden layer ``i``'s block, then ``activation``."""
    ref = stack.linear(i).weight
    width = ref.shape[0]
    new = nn.Linear(width, width).to(device=ref.device, dtype=ref.dtype)
    with th.no_grad():
        new.weight.copy_(th.eye(width))
        new.bias.zero_()
    insert_after_block(stack, i, [new] if activation is None else [new, activation])


def insert_after_block(stack: MLPStack, i: int, modules: list[nn.Module]) -> None:
    """Put ``modules`` right after hidden layer ``i``'s block (its Linear and activation)."""
    current = list(stack.seq)
    at = stack.hidden[i] + len(stack.block(i))
    refill(stack.seq, current[:at] + modules + current[at:])


def remove_hidden_layer(net: nn.Module, stack: MLPStack, i: int) -> None:
    """Drop hidden layer ``i`` (its Linear and activation) and fold its Linear into its readers."""
    check_editable(stack, i, "remove_hidden_layer")
    if len(stack.hidden) < 2:
        raise ValueError(f"remove_hidden_layer: {stack.name or 'the network'} has a single hidden layer")
    layer = stack.linear(i)
    readers = stack.readers(i)
    new_readers = []
    for r in readers:
        bias = r.bias
        if layer.bias is not None:
            bias = (
                r.bias if r.bias is not None else r.weight.new_zeros(r.out_features)
            ) + r.weight @ layer.bias
        new_readers.append(_replace_linear(r, r.weight @ layer.weight, bias))
    at, length = stack.hidden[i], len(stack.block(i))
    _replace_readers(net, stack, readers, new_readers)
    modules = list(stack.seq)
    refill(stack.seq, modules[:at] + modules[at + length :])


def replace_hidden_block(
    stack: MLPStack, i: int, factory: Callable[[list[nn.Module]], nn.Module], unwrap: bool = False
) -> None:
    """Replace hidden layer ``i``'s block (its Linear and the modules after it) by ``factory(block)``.

    :param unwrap: splice a returned Sequential's children into the stack (they stay editable)
    """
    block = stack.block(i)
    start = stack.hidden[i]
    new = factory(block)
    inserted = list(new) if unwrap and isinstance(new, nn.Sequential) else [new]
    modules = list(stack.seq)
    refill(stack.seq, modules[:start] + inserted + modules[start + len(block) :])


def extend_inputs(layer: nn.Linear, extra: int) -> nn.Linear:
    """A copy of ``layer`` with ``extra`` more inputs (appended last) whose weights are zero."""
    weight = th.cat([layer.weight.detach(), layer.weight.new_zeros(layer.out_features, extra)], dim=1)
    return _replace_linear(layer, weight, None if layer.bias is None else layer.bias.detach())


def refill(seq: nn.Sequential, modules: list[nn.Module]) -> None:
    """Refill ``seq`` in place (same Sequential object, children renumbered)."""
    for key in list(seq._modules):
        del seq._modules[key]
    for k, module in enumerate(modules):
        seq.add_module(str(k), module)
