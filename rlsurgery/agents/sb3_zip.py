"""Zips stay SB3 zips: what a surgical agent writes so that plain SB3's ``ALGO.load`` opens it.

A pruned, sparse, re-initialised or distilled policy is made to be deployed, often by tools that
only know Stable-Baselines3 (rl-zoo3's ``enjoy`` calls ``DQN.load``). SB3 rebuilds the policy from
its constructor arguments and sets the parameters with an exact key match, so a zip opens in plain
SB3 exactly when its ``*.pth`` state dicts have the names and shapes of the policy SB3 builds, and
that policy computes what the surgical one computes. One mechanism decides and writes it, at every
:meth:`~rlsurgery.agents.surgical.SurgicalMixin.save`:

1. **Declared.** Each surgery says whether the network it leaves is SB3's own
   (:attr:`Surgery.sb3_representable <rlsurgery.core.surgery.Surgery.sb3_representable>`): pruning,
   sparsity, re-initialisation, weight / spectral normalization, DropConnect and variational
   dropout do (their reparametrizations fold into plain weights); a dueling or distributional head,
   noisy layers, inserted layers, normalization layers, new activations or skip connections do not.
   Forward hooks (steering, ablation, observers) change what a layer outputs: not SB3's either.
2. **Folded.** For a model whose surgeries all declare it, a *deployment copy* of the policy is made
   (eval mode, so spectral norm runs no power iteration and dropout is the identity) and every
   reparametrization in it is made permanent with PyTorch's own tools: ``prune.remove`` (the saved
   ``weight`` is the effective ``weight_orig * weight_mask``), ``parametrize.remove_parametrizations``
   (weight norm, spectral norm, DropConnect), and a module's ``sb3_module()`` where a surgery put in
   a stand-in for an SB3 layer (variational dropout's Linear, its dropped weights zeroed). Its state
   dict is what ``policy.pth`` holds.
3. **Checked.** The policy plain SB3 would build (``policy_class`` with the saved ``policy_kwargs``,
   under a forked RNG so the save changes no random stream) must accept that state dict with an
   exact match and compute the same outputs (Q-values, logits, actions) on sampled observations; an
   optimizer state that does not fit SB3's optimizer (a surgery rebuilt it over other parameters) is
   written as SB3's fresh optimizer state. A model that fails the check is saved as needing
   rlsurgery, the reason kept in the record, so a wrong declaration never yields a zip that loads
   in SB3 and acts differently.
4. **Restored.** What only rlsurgery needs — the full state dict entries the folding dropped or
   changed (``weight_orig``, ``weight_mask``, weight norm's ``original0/1``, spectral norm's ``u, v``,
   ``log_sigma2``), the real optimizer states, the surgeries' own modules (``rls_modules``) — goes to
   :data:`EXTRAS_FILE` in the zip, which SB3 never reads (it loads ``*.pth`` files only). ``rls.load``
   replays the surgeries from the provenance log (masks re-attached, layers re-parametrized), then
   :func:`full_params` puts those entries back over the SB3 ones before the exact-match load, so the
   loaded model predicts and trains on exactly as the saved one (same ``weight_orig``, masks and
   optimizer moments).

5. **SB3's classes.** ``data`` names classes that SB3's ``load`` imports. Where rlsurgery's are
   stand-ins for SB3's, the zip names SB3's (:func:`sb3_class_entries`): the surgical DQN policy
   becomes SB3's ``DQNPolicy`` (``CnnPolicy``, ``MultiInputPolicy``: the same alias) — the check of
   step 3 builds *that* class —, a replay buffer class becomes the SB3 buffer it extends, with the
   keyword arguments SB3's accepts (prioritized replay's ``alpha`` does not go). So plain SB3 opens the
   zip without rlsurgery installed; ``rls.load`` reads rlsurgery's classes from its plain-data copy.

A model that needs rlsurgery is saved in rlsurgery's form (as before), and its ``data`` holds
:data:`~rlsurgery.core.model_zip.PLAIN_LOAD_GUARD_KEY`: an object that plain SB3 unpickles (rlsurgery
never does) and that raises, before any network is built, one line naming the surgeries and saying
to load the model with ``rls.load``. Either way ``data`` holds :data:`RECORD_KEY` (``loads_in_sb3``,
``needs_rlsurgery``, ``reason``), which ``rlsurgery inspect`` prints.
"""

from __future__ import annotations

import copy
import inspect
import io
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from torch import nn
from torch.nn.utils import parametrize, prune

from rlsurgery.core.model_zip import PlainLoadGuard, model_zip_path
from rlsurgery.core.surgery import Attachment
from rlsurgery.nets.layout import resolve
from rlsurgery.nets.modules import detached_copy, set_submodule

#: the zip entry with what only rlsurgery reads (not ``*.pth``, so SB3's ``load`` skips it)
EXTRAS_FILE = "rlsurgery_params.pt"
#: the ``data`` entry saying whether plain SB3 loads the zip: {"loads_in_sb3", "needs_rlsurgery", "reason"}
RECORD_KEY = "rlsurgery_sb3_zip"
#: state dicts that only rlsurgery saves (the surgeries' own modules): kept out of the ``*.pth`` files
RLSURGERY_STATE_DICTS = ("rls_modules",)
#: observations the function check samples
CHECK_BATCH = 16


@dataclass
class SavePlan:
    """What a save writes: the ``*.pth`` state dicts, the extras for rlsurgery, the record."""

    params: dict[str, Any]
    """state dict name (``policy``, ``policy.optimizer``, ...) -> state dict written as ``NAME.pth``"""
    record: dict[str, Any]
    """the JSON record under :data:`RECORD_KEY`"""
    extras: dict[str, Any] = field(default_factory=dict)
    """``{"modules": {name: {"keys": [...], "tensors": {...}}}, "replaced": {name: state dict}}``"""
    data: dict[str, Any] = field(default_factory=dict)
    """``data`` entries written in SB3's classes instead of the model's (:func:`sb3_class_entries`)"""

    @property
    def guard(self) -> PlainLoadGuard | None:
        """The object that stops plain SB3 with a clear error, when the zip needs rlsurgery."""
        if self.record["loads_in_sb3"]:
            return None
        return PlainLoadGuard(self.record["needs_rlsurgery"], self.record.get("reason") or "")


def declared_blockers(model: BaseAlgorithm) -> list[str]:
    """Keys of the applied surgeries that leave a network SB3 cannot build, and owners of forward hooks."""
    keys = [s.key for s in getattr(model, "_surgeries", ()) if not s.sb3_representable]
    keys += [str(h.get("owner") or "forward hooks") for h in getattr(model, "forward_hooks", None) or []]
    return list(dict.fromkeys(keys))


def plan_save(model: BaseAlgorithm, full: dict[str, Any]) -> SavePlan:
    """What ``model.save`` writes, given ``full``: the state dicts in rlsurgery's form (SB3's
    ``get_parameters``). The SB3 form when the model's networks are SB3's, else ``full`` as it is."""
    blockers = declared_blockers(model)
    if blockers:
        return _needs_rlsurgery(full, blockers, "")
    data = sb3_class_entries(model)
    reference = reference_policy(model, data.get("policy_class"))
    params: dict[str, Any] = {}
    extras: dict[str, Any] = {"modules": {}, "replaced": {}}
    for name, state in full.items():
        target = _reference_target(model, reference, name)
        if name in RLSURGERY_STATE_DICTS:
            extras["replaced"][name] = state
        elif target is None:  # SB3's own, outside the policy (SAC's entropy coefficient optimizer)
            params[name] = state
        elif isinstance(target, th.optim.Optimizer):
            fits = _optimizer_fits(state, target)
            params[name] = state if fits else target.state_dict()
            if not fits:
                extras["replaced"][name] = state
        else:
            folded = deployment_copy(resolve(model.policy, _policy_path(model, name))).state_dict()
            reason = _mismatch(folded, target)
            if reason:
                return _needs_rlsurgery(full, _network_keys(model), reason)
            target.load_state_dict(folded)  # for the comparison of outputs below
            params[name] = folded
            changed = {k: v for k, v in state.items() if k not in folded or not _same(v, folded[k])}
            if changed or list(state) != list(folded):
                extras["modules"][name] = {"keys": list(state), "tensors": changed}
    reason = _output_mismatch(model, reference)
    if reason:
        return _needs_rlsurgery(full, _network_keys(model), reason)
    record = {"loads_in_sb3": True, "needs_rlsurgery": [], "reason": None}
    return SavePlan(params, record, extras if extras["modules"] or extras["replaced"] else {}, data)


def from_rlsurgery(cls: type) -> bool:
    """Whether ``cls`` is defined in rlsurgery (importing it needs rlsurgery installed)."""
    return cls.__module__ == "rlsurgery" or cls.__module__.startswith("rlsurgery.")


def sb3_parent(model: BaseAlgorithm) -> type[BaseAlgorithm]:
    """The SB3 (or sb3-contrib) algorithm class of ``model``: the first of its classes not rlsurgery's."""
    return next(c for c in type(model).__mro__ if not from_rlsurgery(c))  # type: ignore[return-value]


def sb3_class_entries(model: BaseAlgorithm) -> dict[str, Any]:
    """The ``data`` entries naming rlsurgery classes, written with SB3's classes instead: ``policy_class``
    (SB3's policy of the same alias), ``replay_buffer_class`` (the SB3 buffer it extends) with the
    ``replay_buffer_kwargs`` that buffer accepts. Empty for a model that names only SB3's classes."""
    entries: dict[str, Any] = {}
    parent = sb3_parent(model)
    if from_rlsurgery(model.policy_class):
        for alias, cls in type(model).policy_aliases.items():
            if model.policy_class is cls and alias in parent.policy_aliases:
                entries["policy_class"] = parent.policy_aliases[alias]
    buffer = getattr(model, "replay_buffer_class", None)
    if isinstance(buffer, type) and from_rlsurgery(buffer):
        base = next(c for c in buffer.__mro__ if not from_rlsurgery(c))
        accepted = inspect.signature(base.__init__).parameters
        entries["replay_buffer_class"] = base
        kwargs = getattr(model, "replay_buffer_kwargs", None) or {}
        entries["replay_buffer_kwargs"] = {k: v for k, v in kwargs.items() if k in accepted}
    return entries


def _needs_rlsurgery(full: dict[str, Any], keys: list[str], reason: str) -> SavePlan:
    return SavePlan(dict(full), {"loads_in_sb3": False, "needs_rlsurgery": keys, "reason": reason or None})


def _network_keys(model: BaseAlgorithm) -> list[str]:
    """The network surgeries applied to ``model`` (named when the check, not a declaration, says no)."""
    keys = [s.key for s in getattr(model, "_surgeries", ()) if Attachment.NETWORK in s.attaches_to]
    return list(dict.fromkeys(keys)) or [s.key for s in getattr(model, "_surgeries", ())] or ["rlsurgery"]


# ---------------------------------------------------------------------------------------- folding
def deployment_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` in eval mode with every reparametrization made permanent: pruning masks
    multiplied in, parametrizations (weight / spectral norm, DropConnect) evaluated once, stand-in
    layers replaced by their ``sb3_module()``. Optimizers the module holds are not copied."""
    deployed = detached_copy(module)
    deployed.eval()
    with th.no_grad():
        for name, sub in list(deployed.named_modules()):
            make = getattr(sub, "sb3_module", None)
            if name and callable(make):
                set_submodule(deployed, name, make())
        for sub in list(deployed.modules()):
            for hook in list(sub._forward_pre_hooks.values()):
                if isinstance(hook, prune.BasePruningMethod):
                    prune.remove(sub, hook._tensor_name)
            if parametrize.is_parametrized(sub):
                _fold_parametrizations(sub)
    return deployed


def _fold_parametrizations(module: nn.Module) -> None:
    """Make ``module``'s parametrized tensors plain parameters holding their current values.

    Not ``parametrize.remove_parametrizations``: it deletes the tensor's property from the module's
    class, which a deep copy shares with the original module."""
    values = {name: getattr(module, name).detach().clone() for name in module.parametrizations}
    module.__class__ = type(module).__bases__[0]  # the class parametrize derived the module's class from
    del module._modules["parametrizations"]
    for name, value in values.items():
        module.register_parameter(name, nn.Parameter(value))


def _same(a: Any, b: Any) -> bool:
    return isinstance(a, th.Tensor) and isinstance(b, th.Tensor) and a.shape == b.shape and th.equal(a, b)


# ---------------------------------------------------------------------------------------- the check
def reference_policy(model: BaseAlgorithm, policy_class: type | None = None) -> nn.Module:
    """The policy plain SB3's ``load`` builds for ``model``'s saved data (its RNG left as it was):
    ``policy_class`` (the class the zip names; default the model's) with the saved ``policy_kwargs``."""
    kwargs = {k: v for k, v in model.policy_kwargs.items() if k != "device"}
    if isinstance(model, OnPolicyAlgorithm):
        kwargs["use_sde"] = model.use_sde
    cls = policy_class or model.policy_class
    with th.random.fork_rng(devices=[]):
        policy = cls(model.observation_space, model.action_space, model.lr_schedule, **kwargs)
    return policy.to(model.device)


def _policy_path(model: BaseAlgorithm, name: str) -> str:
    """Path below ``model.policy`` of the module that the state dict ``name`` belongs to."""
    owner = resolve(model, name)
    if owner is model.policy:
        return ""
    return next(n for n, m in model.policy.named_modules() if m is owner)


def _reference_target(model: BaseAlgorithm, reference: nn.Module, name: str) -> Any:
    """What plain SB3 loads the state dict ``name`` into: a module or optimizer of ``reference``;
    None for what is not part of the policy."""
    owner_name, _, attribute = name.rpartition(".")
    if attribute == "optimizer":
        owner = resolve(model, owner_name)
        if owner is not model.policy and not any(owner is m for m in model.policy.modules()):
            return None
        return resolve(reference, _policy_path(model, owner_name)).optimizer
    obj = resolve(model, name)
    if obj is model.policy or any(obj is m for m in model.policy.modules()):
        return resolve(reference, _policy_path(model, name))
    return None


def _mismatch(folded: dict[str, th.Tensor], reference: nn.Module) -> str:
    """Why ``folded`` does not load into ``reference`` with an exact match ("" when it does)."""
    expected = reference.state_dict()
    missing = [k for k in expected if k not in folded]
    unexpected = [k for k in folded if k not in expected]
    shapes = [k for k in expected if k in folded and folded[k].shape != expected[k].shape]
    parts = [
        f"{what} {', '.join(keys[:3])}{' …' if len(keys) > 3 else ''}"
        for what, keys in (("SB3 has no", unexpected), ("missing", missing), ("other shapes:", shapes))
        if keys
    ]
    return f"its parameters are not those of SB3's network ({'; '.join(parts)})" if parts else ""


def _optimizer_fits(state: dict[str, Any], optimizer: th.optim.Optimizer) -> bool:
    """Whether plain SB3's ``optimizer`` takes the saved ``state`` as it is (same groups, parameter
    counts, hyper-parameter names, moment shapes)."""
    groups, expected = state.get("param_groups", []), optimizer.param_groups
    if len(groups) != len(expected):
        return False
    for group, ref in zip(groups, expected):
        if len(group["params"]) != len(ref["params"]) or set(group) != set(ref):
            return False
    shapes = [p.shape for g in expected for p in g["params"]]
    for index, values in state.get("state", {}).items():
        for value in values.values():
            if isinstance(value, th.Tensor) and value.dim() > 0 and value.shape != shapes[index]:
                return False
    return True


def check_observations(space: spaces.Space, n: int = CHECK_BATCH) -> Any:
    """``n`` observations sampled from a copy of ``space`` (seed 0; the model's space keeps its RNG)."""
    space = copy.deepcopy(space)
    space.seed(0)
    samples = [space.sample() for _ in range(n)]
    if isinstance(samples[0], dict):
        return {k: np.stack([s[k] for s in samples]) for k in samples[0]}
    batch = np.stack(samples)
    return batch.clip(-10, 10) if batch.dtype.kind == "f" else batch


def _output_mismatch(model: BaseAlgorithm, reference: nn.Module) -> str:
    """Compare the outputs of ``reference`` (holding the SB3-form weights) with the model's ("" if equal)."""
    policy = model.policy
    obs, _ = policy.obs_to_tensor(check_observations(model.observation_space))
    discrete = isinstance(model.action_space, spaces.Discrete)
    layout = type(model).LAYOUT
    training = policy.training
    policy.set_training_mode(False)
    reference.set_training_mode(False)
    try:
        with th.random.fork_rng(devices=[]), th.no_grad():
            ours, theirs = layout.outputs(policy, obs, discrete), layout.outputs(reference, obs, discrete)
    finally:
        policy.set_training_mode(training)
    if ours.shape != theirs.shape or not th.allclose(ours.float(), theirs.float(), rtol=1e-5, atol=1e-5):
        return "SB3's network with the same weights computes other outputs"
    return ""


# ---------------------------------------------------------------------------------------- zip I/O
def write_extras(path: Any, extras: dict[str, Any]) -> None:
    """Add :data:`EXTRAS_FILE` to the zip at ``path`` (a file name or a seekable file object)."""
    if not extras:
        return
    buffer = io.BytesIO()
    th.save(extras, buffer)
    target = _zip_target(path)
    with zipfile.ZipFile(target, mode="a") as archive:
        archive.writestr(EXTRAS_FILE, buffer.getvalue())


def _zip_target(path: Any) -> Any:
    """The file SB3's ``save(path)`` wrote: ``path.zip`` for a name without a suffix."""
    if isinstance(path, (str, Path)):
        path = Path(path)
        return Path(f"{path}.zip") if path.suffix == "" else path
    path.seek(0)
    return path


def read_extras(path: Any) -> dict[str, Any] | None:
    """The :data:`EXTRAS_FILE` of a model zip (``torch.load(weights_only=True)``), or None."""
    if isinstance(path, (str, Path)):
        path = model_zip_path(path)
        if not Path(path).is_file():
            return None
    else:
        path.seek(0)
    try:
        with zipfile.ZipFile(path) as archive:
            if EXTRAS_FILE not in archive.namelist():
                return None
            raw = archive.read(EXTRAS_FILE)
    except zipfile.BadZipFile:
        return None
    finally:
        if not isinstance(path, (str, Path)):
            path.seek(0)
    return th.load(io.BytesIO(raw), map_location="cpu", weights_only=True)


def full_params(params: dict[str, Any], extras: dict[str, Any] | None) -> dict[str, Any]:
    """The state dicts in rlsurgery's form: the SB3-form ``params`` with the ``extras`` put back."""
    if not extras:
        return params
    out = dict(params)
    for name, entry in extras.get("modules", {}).items():
        sb3, tensors = params.get(name, {}), entry["tensors"]
        out[name] = OrderedDict((k, tensors[k] if k in tensors else sb3[k]) for k in entry["keys"])
    out.update(extras.get("replaced", {}))
    return out


def sb3_loading(data: dict[str, Any]) -> dict[str, Any]:
    """What a model's ``data`` says about loading in plain SB3 (for ``rlsurgery inspect``):
    ``loads_in_sb3`` (None for an rlsurgery zip from before it was recorded) and, when False, which
    surgeries need rlsurgery and why."""
    record = data.get(RECORD_KEY)
    if isinstance(record, dict) and isinstance(record.get("loads_in_sb3"), bool):
        if record["loads_in_sb3"]:
            return {"loads_in_sb3": True}
        out = {"loads_in_sb3": False, "needs_rlsurgery": list(record.get("needs_rlsurgery") or [])}
        return {**out, **({"sb3_reason": record["reason"]} if record.get("reason") else {})}
    return {"loads_in_sb3": None if "rlsurgery_algorithm" in data else True}
