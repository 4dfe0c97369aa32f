"""Forward hooks as recorded modules: hooks on named layers that are saved and come back on ``load``.

Steering, ablation, activation patching and quantization observers all change or watch what a
layer outputs. Each is a *hook kind*, registered once with a factory that builds the hook from
plain parameters; putting one on a model records ``(layer, kind, params, owner)`` in
``model.forward_hooks`` (plain data, saved in the zip), and a surgical agent puts every recorded
hook back when it is loaded, after the network surgeries have rebuilt the architecture::

    @register_hook_kind("scale_output")
    def scale_output(factor: float):
        return lambda module, inputs, output: output * factor

    add_forward_hook(model, "q_net.q_net.1", "scale_output", owner="my_surgery", factor=0.5)

A hook's factory returns a function ``(module, inputs, output) -> output or None`` (PyTorch's
forward-hook signature: a returned value replaces the output), or an ``nn.Module`` with that
``forward``, whose parameters and buffers then sit under the hooked layer's
``rlsurgery_hooks`` and are saved and loaded with the policy (observers' statistics, a learnt
steering vector). A surgery that adds hooks while the agent is built must not add them again when
``load`` replays it (``apply(agent, replay=True)``): the records bring them back.

>>> from stable_baselines3 import DQN
>>> model = DQN("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[4]))
>>> add_forward_hook(model, "q_net.q_net.1", "ablate", owner="doc", units=[0, 1, 2, 3])
>>> obs = th.zeros(1, 4)
>>> bool((model.q_net.q_net[1](th.ones(1, 4)) == 0).all())
True
>>> remove_forward_hooks(model, owner="doc"), model.forward_hooks
(1, [])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.nets.layout import resolve

#: hook kind -> factory(**params) -> hook function or module
HOOK_KINDS: dict[str, Callable[..., Any]] = {}
#: where the live handles are kept on a model (not saved; rebuilt from the records)
_HANDLES = "_forward_hook_handles"


def register_hook_kind(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register a hook factory under ``kind``."""

    def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
        if kind in HOOK_KINDS and HOOK_KINDS[kind] is not factory:
            raise RuntimeError(f"hook kind {kind!r} registered twice")
        HOOK_KINDS[kind] = factory
        return factory

    return decorate


@register_hook_kind("ablate")
def ablate(units: list[int]) -> Callable[..., th.Tensor]:
    """Zero the given output units of the layer (ablation: y_i = 0 for i in ``units``)."""

    def hook(_module: nn.Module, _inputs: Any, output: th.Tensor) -> th.Tensor:
        output = output.clone()
        output[..., units] = 0.0
        return output

    return hook


def records(model: BaseAlgorithm) -> list[dict[str, Any]]:
    """The model's hook records (created empty on first use)."""
    found = model.__dict__.get("forward_hooks")
    if not isinstance(found, list):
        found = model.__dict__["forward_hooks"] = []
    return found


def _attach(model: BaseAlgorithm, record: dict[str, Any]) -> None:
    kind = record["kind"]
    if kind not in HOOK_KINDS:
        raise IncompatibleSurgeryError(
            f"forward hook kind {kind!r} (on {record['layer']}, by {record['owner'] or 'the user'}) is not "
            f"registered; import the module that registers it (known: {', '.join(sorted(HOOK_KINDS))})"
        )
    try:
        layer = resolve(model.policy, record["layer"])
    except AttributeError:
        raise IncompatibleSurgeryError(
            f"forward hook {kind!r}: the policy has no layer {record['layer']!r}"
        ) from None
    hook = HOOK_KINDS[kind](**record["params"])
    if isinstance(hook, nn.Module):
        if not hasattr(layer, "rlsurgery_hooks"):
            layer.rlsurgery_hooks = nn.ModuleList()
        layer.rlsurgery_hooks.append(hook.to(next(model.policy.parameters()).device))
        handle = layer.register_forward_hook(lambda module, inputs, output, h=hook: h(module, inputs, output))
    else:
        handle = layer.register_forward_hook(hook)
    model.__dict__.setdefault(_HANDLES, []).append((record, handle))


def add_forward_hook(model: BaseAlgorithm, layer: str, kind: str, owner: str = "", **params: Any) -> None:
    """Put a hook of ``kind`` (built from ``params``, plain data) on the layer at dotted path ``layer``
    below ``model.policy``, and record it so that ``save``/``load`` bring it back."""
    record = {"layer": layer, "kind": kind, "params": dict(params), "owner": owner}
    _attach(model, record)
    records(model).append(record)


def remove_forward_hooks(model: BaseAlgorithm, owner: str | None = None, kind: str | None = None) -> int:
    """Remove the hooks of ``owner`` and/or ``kind`` (all when both are None); return how many."""
    handles = model.__dict__.get(_HANDLES, [])
    keep, removed = [], 0
    for record, handle in handles:
        if (owner is None or record["owner"] == owner) and (kind is None or record["kind"] == kind):
            handle.remove()
            removed += 1
        else:
            keep.append((record, handle))
    model.__dict__[_HANDLES] = keep
    kept_records = {id(record) for record, _ in keep}
    records(model)[:] = [r for r in records(model) if id(r) in kept_records]
    return removed


def reattach_forward_hooks(model: BaseAlgorithm) -> None:
    """Put back every recorded hook (after ``load`` rebuilt the networks); live ones are replaced."""
    for _record, handle in model.__dict__.get(_HANDLES, []):
        handle.remove()
    model.__dict__[_HANDLES] = []
    for record in records(model):
        _attach(model, record)
