"""Module-level edits: find, replace and insert submodules of a network."""

from __future__ import annotations

import contextlib
import copy
import itertools
import weakref
from collections.abc import Callable, Iterator
from typing import Literal, TypeVar

import torch as th
from torch import nn
from torch.nn.modules.module import (
    register_module_module_registration_hook,
    register_module_parameter_registration_hook,
)

#: activation modules by the names surgeries use
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
}
ActivationName = Literal["relu", "tanh", "elu", "gelu", "silu", "leaky_relu", "softplus"]


ModuleT = TypeVar("ModuleT", bound=nn.Module)

#: bumped whenever any module anywhere registers a submodule or a parameter (torch's global
#: registration hooks): a cached walk of a network is valid while this count is unchanged
_registrations = 0
#: root module -> {module type: (registration count at the walk, the submodules of that type)}
_walks: weakref.WeakKeyDictionary[nn.Module, dict[type, tuple[int, tuple[nn.Module, ...]]]] = (
    weakref.WeakKeyDictionary()
)


def _count_registration(_module: nn.Module, _name: str, _value: object) -> None:
    global _registrations
    _registrations += 1


register_module_module_registration_hook(_count_registration)
register_module_parameter_registration_hook(_count_registration)


def modules_of_type(root: nn.Module, kind: type[ModuleT]) -> tuple[ModuleT, ...]:
    """The submodules of ``root`` (itself included) that are instances of ``kind``, in definition order.

    For per-step work (noise resets, dropout rates): the walk is cached per ``root`` and redone as
    soon as any module registers a submodule (``setattr``, ``add_module``, which every replacement
    goes through); a submodule removed with ``del`` stays listed until the next registration.

    >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    >>> modules_of_type(net, nn.Linear)
    (Linear(in_features=2, out_features=3, bias=True),)
    >>> net[1] = nn.Linear(3, 1)
    >>> len(modules_of_type(net, nn.Linear))
    2
    """
    return cached_walk(root, kind, lambda: tuple(m for m in root.modules() if isinstance(m, kind)))  # type: ignore[return-value]


def parameters_of(root: nn.Module) -> tuple[nn.Parameter, ...]:
    """``tuple(root.parameters())``, cached like :func:`modules_of_type` (a parameter registered
    anywhere, e.g. ``layer.weight = nn.Parameter(...)``, redoes the walk)."""
    return cached_walk(root, nn.Parameter, lambda: tuple(root.parameters()))  # type: ignore[return-value]


def cached_walk(root: nn.Module, kind: object, walk: Callable[[], tuple]) -> tuple:
    """``walk()``'s result for (``root``, ``kind``), redone when anything registered since (``kind``
    is any hashable tag of the walk)."""
    cached = _walks.setdefault(root, {}).get(kind)
    if cached is None or cached[0] != _registrations:
        cached = _walks[root][kind] = (_registrations, walk())
    return cached[1]


def set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at dotted path ``name`` (``""`` is not allowed)."""
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


@contextlib.contextmanager
def modes_kept(root: nn.Module, training: bool = False) -> Iterator[nn.Module]:
    """``root`` (and every submodule) in training mode ``training`` inside the block, each module's own
    mode restored afterwards, whatever happens (eval mode: no dropout, BatchNorm on its statistics).

    >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout())
    >>> with modes_kept(net):
    ...     net[1].training
    False
    >>> net[1].training
    True
    """
    modes = {m: m.training for m in root.modules()}
    root.train(training)
    try:
        yield root
    finally:
        for module, mode in modes.items():
            module.training = mode


def replace_modules(
    root: nn.Module,
    predicate: Callable[[str, nn.Module], bool],
    factory: Callable[[str, nn.Module], nn.Module],
) -> list[str]:
    """Replace every submodule for which ``predicate(name, module)`` holds by ``factory(name, module)``.

    Matches are collected first, so a replacement is never visited again. Returns the
    dotted names of the replaced modules. New modules are moved to the device and dtype
    of the module they replace.

    >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    >>> replace_modules(net, lambda n, m: isinstance(m, nn.ReLU), lambda n, m: nn.Tanh())
    ['1']
    >>> net[1]
    Tanh()
    """
    matches = [(name, module) for name, module in root.named_modules() if name and predicate(name, module)]
    # skip matches nested inside another match: the outer replacement covers them
    names = [n for n, _ in matches]
    kept = [(n, m) for n, m in matches if not any(n.startswith(o + ".") for o in names if o != n)]
    for name, module in kept:
        new = factory(name, module)
        ref = next(iter(module.parameters()), None)
        if ref is None:
            ref = next(iter(module.buffers()), None)
        if ref is not None:
            new = new.to(device=ref.device, dtype=ref.dtype if ref.is_floating_point() else None)
        set_submodule(root, name, new)
    return [n for n, _ in kept]


def linear_layers(module: nn.Module) -> list[tuple[str, nn.Linear]]:
    """All ``nn.Linear`` submodules (subclasses included), in definition order."""
    return [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear)]


def split_mlp(module: nn.Module) -> tuple[list[nn.Sequential], nn.Module]:
    """Split an SB3 ``create_mlp`` Sequential into hidden blocks and the output layer.

    A hidden block is a linear layer followed by its non-linear modules; the output layer
    is the last linear layer. Raises ``TypeError`` when ``module`` is not such an MLP.

    >>> blocks, out = split_mlp(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    >>> len(blocks), out
    (1, Linear(in_features=8, out_features=2, bias=True))
    """
    if not isinstance(module, nn.Sequential) or len(module) == 0:
        raise TypeError(f"expected a non-empty nn.Sequential MLP, got {type(module).__name__}")
    layers = list(module)
    linear_positions = [i for i, m in enumerate(layers) if _is_linear(m)]
    if not linear_positions or linear_positions[-1] != len(layers) - 1:
        raise TypeError("expected an MLP that ends with a linear layer")
    if linear_positions[0] != 0:
        raise TypeError("expected an MLP that starts with a linear layer")
    blocks = []
    for start, end in itertools.pairwise(linear_positions):
        blocks.append(nn.Sequential(*layers[start:end]))
    return blocks, layers[-1]


def _is_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or (
        hasattr(module, "in_features") and hasattr(module, "out_features")
    )


def detached_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` that shares, rather than copies, what is not its own state: optimizers
    it holds are left out (None), non-leaf tensors it caches (pruning's computed weight) are copied
    detached, and public non-module attributes (spaces, the last action distribution) are shared."""
    memo: dict[int, object] = {}
    for sub in module.modules():
        for name, value in vars(sub).items():
            if isinstance(value, th.optim.Optimizer):
                memo[id(value)] = None
            elif isinstance(value, th.Tensor):
                if not value.is_leaf:
                    memo[id(value)] = value.detach().clone()
            elif not name.startswith("_") and not isinstance(value, nn.Module):
                memo[id(value)] = value
    return copy.deepcopy(module, memo=memo)


def fresh_copy(module: nn.Module) -> nn.Module:
    """A module of the same architecture with newly initialised parameters."""

    new = copy.deepcopy(module)
    for sub in new.modules():
        if hasattr(sub, "reset_parameters"):
            sub.reset_parameters()
    return new


def hidden_linear_names(net: nn.Module, outputs: set[str]) -> list[str]:
    """Names of the hidden ``Linear`` layers of ``net``: those sitting in an ``nn.Sequential`` (SB3's MLPs,
    and the blocks surgeries build from them), minus the output layers ``outputs``. Linear layers
    that are parts of inserted modules (shortcuts, gates, attention projections) are not hidden
    layers."""
    modules = dict(net.named_modules())
    names = []
    for name, module in modules.items():
        parent = modules[name.rpartition(".")[0]] if "." in name else net
        if type(module) is nn.Linear and isinstance(parent, nn.Sequential) and name not in outputs:
            names.append(name)
    return names


def conv_names(net: nn.Module) -> list[str]:
    """Names of the ``Conv2d`` layers of ``net``."""
    return [name for name, module in net.named_modules() if isinstance(module, nn.Conv2d)]


def follow_with(net: nn.Module, names: list[str], factory: Callable[[str, nn.Module], nn.Module]) -> None:
    """Replace each named layer L by ``nn.Sequential(L, factory(name, L))`` (e.g. a normalization)."""
    for name in names:
        layer = net.get_submodule(name)
        set_submodule(net, name, nn.Sequential(layer, factory(name, layer)))
