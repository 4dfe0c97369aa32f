"""Carrying weights from a source policy into a target policy, and the layer groups transfer works on.

:func:`copy_policy_weights` copies a source policy's state dict into a target policy entry by entry,
by name and shape. Entries in ``keep`` stay as the target has them (a new head); entries in ``remap``
are copied in part along one axis (a head over another action set: rows, or a critic's action
columns, through a map from target actions to source actions). Pruning masks are looked through on
either side: a masked target layer's ``weight_orig`` takes the source's ``weight`` (the target keeps
its own mask), and a pruned source gives its effective weight ``weight_orig * weight_mask``.

:func:`action_tensors` finds the entries indexed by the action in any agent's policy (DQN's Q head,
PPO/A2C/TRPO's ``action_net`` and ``log_std``, SAC/TD3's actor heads and the action inputs of their
critics), so a head can be carried to an action set of another size.

:func:`depth_groups` cuts a network into layer groups counted from the top (ULMFiT's layer groups,
Howard & Ruder 2018, https://arxiv.org/abs/1801.06146): group 0 holds the output layers, group k the
k-th hidden layer below them in every MLP (PPO's policy and value towers side by side), and what lies
below the first hidden layer (a CNN, a features extractor) the deepest group.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.nets.layout import layout_of, resolve
from rlsurgery.nets.masks import output_layer_names
from rlsurgery.nets.mlp import mlp_stacks


@dataclass(frozen=True)
class PartialCopy:
    """Copy a tensor in part: along ``dim``, the first ``prefix`` entries whole, then entry
    ``prefix + i`` of the target from entry ``prefix + mapping[i]`` of the source (None: kept)."""

    dim: int
    prefix: int
    mapping: tuple[int | None, ...]


def unmasked_tensors(state: Mapping[str, th.Tensor]) -> dict[str, th.Tensor]:
    """A state dict with its pruned layers seen as plain ones: ``X`` = ``X_orig * X_mask``."""
    plain = {name: t for name, t in state.items() if not name.endswith(("_orig", "_mask"))}
    for name, t in state.items():
        if name.endswith("_orig"):
            base = name[: -len("_orig")]
            mask = state.get(base + "_mask")
            plain[base] = t if mask is None else t * mask
    return plain


def _partial(target: th.Tensor, source: th.Tensor, how: PartialCopy) -> th.Tensor | None:
    """``target`` with ``source``'s entries copied as ``how`` says (None: the shapes do not allow it)."""
    if target.dim() != source.dim() or how.dim >= target.dim():
        return None
    if any(a != b for d, (a, b) in enumerate(zip(target.shape, source.shape)) if d != how.dim):
        return None
    if target.shape[how.dim] != how.prefix + len(how.mapping):
        return None
    out = target.detach().clone()
    source = source.detach().to(out.device, out.dtype)
    if how.prefix:
        out.narrow(how.dim, 0, how.prefix).copy_(source.narrow(how.dim, 0, how.prefix))
    pairs = [(how.prefix + i, how.prefix + j) for i, j in enumerate(how.mapping) if j is not None]
    if pairs:
        if max(j for _, j in pairs) >= source.shape[how.dim]:
            return None
        into = th.tensor([i for i, _ in pairs], device=out.device)
        fro = th.tensor([j for _, j in pairs], device=out.device)
        out.index_copy_(how.dim, into, source.index_select(how.dim, fro))
    return out


def copy_policy_weights(
    policy: nn.Module,
    source_state: Mapping[str, th.Tensor],
    keep: Collection[str] = (),
    remap: Mapping[str, PartialCopy] | None = None,
) -> dict[str, list[str]]:
    """Copy ``source_state`` into ``policy`` by name and shape; return what happened to each entry.

    :param keep: entries left as they are (e.g. a freshly initialised head)
    :param remap: entries copied in part (:class:`PartialCopy`)
    :return: ``copied``, ``partially_copied``, ``kept``, ``shape_mismatch``, ``missing_in_source``
        (lists of state-dict names)
    """
    remap = remap or {}
    target = policy.state_dict()
    unmasked = unmasked_tensors(source_state)
    report: dict[str, list[str]] = {
        "copied": [],
        "partially_copied": [],
        "kept": [],
        "shape_mismatch": [],
        "missing_in_source": [],
    }
    updated = {}
    for name, tensor in target.items():
        base = name.removesuffix("_orig")
        if name in keep or base in keep:
            report["kept"].append(name)
            continue
        found = source_state.get(name)
        if found is None and name.endswith("_mask") and name[: -len("_mask")] + "_orig" in target:
            continue  # the target's own pruning mask: kept as it is
        if found is None:
            found = unmasked.get(base)
        if found is None:
            report["missing_in_source"].append(name)
            continue
        how = remap.get(name) or remap.get(base)
        if how is not None:
            partial = _partial(tensor, found, how)
            if partial is None:
                report["shape_mismatch"].append(name)
            else:
                updated[name] = partial
                report["partially_copied"].append(name)
        elif found.shape != tensor.shape:
            report["shape_mismatch"].append(name)
        else:
            updated[name] = found.detach().to(tensor.device, tensor.dtype)
            report["copied"].append(name)
    policy.load_state_dict(updated, strict=False)
    return report


def action_count(space: spaces.Space) -> int:
    """How many actions (``Discrete``) or action dimensions (a 1-D ``Box``) ``space`` has."""
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.Box) and len(space.shape) == 1:
        return int(space.shape[0])
    raise IncompatibleSurgeryError(f"action space {space} is neither Discrete nor a 1-D Box")


def _names_in(policy: nn.Module, modules: Sequence[nn.Module]) -> list[str]:
    """The state-dict names of the tensors of ``modules`` (each a submodule of ``policy``)."""
    where = {id(m): n for n, m in policy.named_modules()}
    names = []
    for module in modules:
        prefix = where[id(module)]
        for local, _ in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            names.append(f"{prefix}.{local}" if prefix else local)
    return names


def head_modules(model: BaseAlgorithm) -> list[nn.Module]:
    """The output layers of every network of ``model`` (online and targets): Q heads, action and value
    heads, actor heads, critics' last layers."""
    modules = []
    for net in layout_of(model).networks(model.policy).values():
        modules += [net.get_submodule(name) for name in sorted(output_layer_names(net))]
    return modules


def head_parameters(model: BaseAlgorithm) -> list[tuple[str, nn.Parameter]]:
    """The heads' parameters that are not a layer's: ``log_std`` of PPO/A2C/TRPO (a vector, or a
    (latent, actions) matrix with gSDE) and of SAC's actor with gSDE, by state-dict name."""
    return [(name, p) for name, p in model.policy.named_parameters() if name.rsplit(".", 1)[-1] == "log_std"]


def head_tensor_names(model: BaseAlgorithm) -> list[str]:
    """State-dict names of the output layers' tensors (:func:`head_modules`) and of the heads' bare
    parameters (:func:`head_parameters`)."""
    return _names_in(model.policy, head_modules(model)) + [name for name, _ in head_parameters(model)]


def action_tensors(model: BaseAlgorithm) -> dict[str, tuple[int, int]]:
    """The policy's state-dict entries indexed by the action: name -> (axis, entries before the actions).

    Rows of DQN's Q head, of PPO/A2C/TRPO's ``action_net``, of SAC/TD3's actor heads (``mu``,
    ``log_std``); the action axis of a ``Box`` policy's bare ``log_std`` (its last axis, which is the
    columns of gSDE's matrix); the trailing action columns of the first layer of
    every SAC/TD3 critic (which reads ``[features, action]``). Every other network keeps its shape
    when the action set changes.

    :raises IncompatibleSurgeryError: a head whose size is not the action count (dueling streams,
        distributional atoms), for which rows are not actions
    """
    layout, policy = layout_of(model), model.policy
    n = action_count(model.action_space)
    rows: list[nn.Module] = []
    columns: list[nn.Module] = []
    for role in layout.roles:
        net = resolve(policy, role.path)
        outputs = [net.get_submodule(name) for name in sorted(output_layer_names(net))]
        if layout.kind == "q":
            rows += outputs
        elif layout.kind == "distribution":
            rows += [m for m in outputs if m is getattr(policy, "action_net", None)]
        elif role.name.startswith("actor"):
            rows += outputs
        else:  # a critic: each Q network's first Linear reads the action after the features
            for stack in mlp_stacks(net):
                first = next((m for m in stack.seq if isinstance(m, nn.Linear)), None)
                if first is not None:
                    columns.append(first)
    found: dict[str, tuple[int, int]] = {}
    for module in rows:
        name = _names_in(policy, [module])[0].rsplit(".", 1)[0]
        if module.weight.shape[0] != n:
            raise IncompatibleSurgeryError(
                f"the output layer {name} has {module.weight.shape[0]} outputs for {n} actions: its rows are "
                "not one per action (a dueling or distributional head?)"
            )
        found.update({tensor: (0, 0) for tensor in _names_in(policy, [module])})
    for module in columns:
        found[f"{_names_in(policy, [module])[0].rsplit('.', 1)[0]}.weight"] = (1, module.in_features - n)
    if isinstance(model.action_space, spaces.Box):
        for name, p in head_parameters(model):  # the action is the last axis (a gSDE matrix's columns)
            found[name] = (p.dim() - 1, 0)
    return found


def depth_groups(
    nets: Sequence[nn.Module], extra_top: Sequence[nn.Parameter] = (), include_frozen: bool = False
) -> list[list[nn.Parameter]]:
    """The parameters of ``nets`` in layer groups counted from the top (see the module's docstring).

    Group 0: the output layers (and ``extra_top``, e.g. PPO's ``log_std``); group k: the k-th hidden
    ``Linear`` from the top of every MLP, with the modules defined after it and before the next hidden
    ``Linear`` (norms, adapters); last: every parameter defined before the first hidden layer. Only
    parameters that train (``requires_grad``) at the call are grouped, unless ``include_frozen``;
    each comes once.
    """
    depth_of: dict[int, int] = {}
    for net in nets:
        for name in output_layer_names(net):
            for p in net.get_submodule(name).parameters():
                depth_of.setdefault(id(p), 0)
        for stack in mlp_stacks(net):
            for k, i in enumerate(reversed(range(len(stack.hidden))), start=1):
                for p in stack.linear(i).parameters():
                    depth_of.setdefault(id(p), k)
    layer_ids = set(depth_of)  # the top extras do not place the modules defined after them
    for p in extra_top:
        depth_of.setdefault(id(p), 0)
    deepest = max(depth_of.values(), default=0) + 1
    groups: dict[int, list[nn.Parameter]] = {}
    seen: set[int] = set()
    for net in nets:
        current: int | None = None  # the group of the last grouped layer met in definition order
        for module in net.modules():
            own = list(module.parameters(recurse=False))
            placed = [depth_of[id(p)] for p in own if id(p) in layer_ids]
            if placed:
                current = placed[0]
            for p in own:
                if id(p) in seen or not (p.requires_grad or include_frozen):
                    continue
                seen.add(id(p))
                depth = depth_of.get(id(p), deepest if current is None else current)
                groups.setdefault(depth, []).append(p)
    return [groups[d] for d in sorted(groups)]


def agent_depth_groups(
    model: BaseAlgorithm, role: str | None = None, include_frozen: bool = False
) -> list[list[nn.Parameter]]:
    """:func:`depth_groups` of the online networks trained by optimizer ``role`` (all when None), the
    heads' bare parameters (``log_std``) on top."""
    layout = layout_of(model)
    by_role = layout.optimizer_networks(model.policy)
    nets = [net for r, ns in by_role.items() if role in (None, r) for net in ns]
    return depth_groups(nets, [p for _, p in head_parameters(model)], include_frozen)
