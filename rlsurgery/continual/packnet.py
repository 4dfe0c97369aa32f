"""PackNet: after each task, keep its most important weights, free the rest for the next task, freeze.

Mallya & Lazebnik 2018, https://arxiv.org/abs/1711.05769. Every weight of every Linear / Conv2d layer of
the online networks (and their targets) has an owner: −1 while free, else the task that kept it. At the
end of task k, of the weights still free, the fraction 1 − p with the largest |w| in each layer become
task k's (owner k); the others are set to 0 and stay free for the next task. Then::

    acting on task t < k:  W_t = W ⊙ [0 ≤ owner ≤ t]        (an old task: its own and older weights)
    training task k:       W_k = W ⊙ [owner ≤ k or owner = −1],  gradient ∂L/∂W ⊙ [owner = −1]

so an old task's outputs are bit-identical after later tasks train. Biases and every other parameter
(norms, ``log_std``) train during the first task only (the paper's choice). There is no retraining of
the kept weights after pruning. The mask is a ``torch.nn.utils.prune`` mask (:mod:`rlsurgery.nets.masks`)
recomputed from the owners and the agent's task (``rls_task``, :func:`rlsurgery.runtime.tasks.on_task`)
before each forward pass; the owners are buffers, saved with the model. Refused with weight decay in the
optimizer (it would move frozen weights) and with the pruning surgeries (one mask per layer).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, ClassVar

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import param
from rlsurgery.core.surgery import ON_POLICY_FAMILIES, Attachment, Surgery
from rlsurgery.nets.layout import layout_of
from rlsurgery.nets.masks import PRUNABLE, PRUNING_KEYS, apply_mask, is_masked
from rlsurgery.nets.step_hooks import optimizers_by_role
from rlsurgery.runtime.tasks import TaskSwitch, current_task

#: the buffer of each masked layer that holds its weights' owners
OWNER = "packnet_owner"


@dataclass
class PackNetParams:
    prune_fraction: float = param(
        0.5,
        "p: fraction of each layer's free weights released (set to 0) for later tasks at a task's end",
        ge=0.0,
        lt=1.0,
    )


@dataclass
class PackNetState:
    packed: int = 0
    """k: the tasks whose weights are kept and frozen"""


def task_mask(owner: th.Tensor, acting: int, packed: int) -> th.Tensor:
    """The weights task ``acting`` computes with, after ``packed`` tasks were packed (see the module)."""
    own = (owner >= 0) & (owner <= acting)
    return (own | ((owner < 0) & (acting >= packed))).to(th.float32)


def keep_largest_free(weight: th.Tensor, owner: th.Tensor, fraction_kept: float) -> th.Tensor:
    """Which free entries (owner −1) to keep: the ``fraction_kept`` of them with the largest |w|."""
    free = owner < 0
    n_keep = round(fraction_kept * int(free.sum()))
    kept = th.zeros_like(free)
    if n_keep > 0:
        scores = th.where(free, weight.detach().abs(), th.full_like(weight, -1.0))
        kept.view(-1)[th.topk(scores.view(-1), n_keep).indices] = True
    return kept & free


def _layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, PRUNABLE)]


@register(proof="tests/continual/test_continual.py::test_packnet_keeps_old_task_outputs_bit_identical")
class PackNet(Surgery):
    """Prune to a mask per task at each switch and freeze the kept weights; act with the task's mask."""

    key = "packnet"
    attaches_to = (Attachment.NETWORK, Attachment.SCHEDULE)
    families = ("dqn", *ON_POLICY_FAMILIES, "sac", "td3")
    conflicts = (*PRUNING_KEYS, "weight_decay_modification", "optimizer_switching", "batch_normalization")
    conflict_reason = (
        "one pruning mask per layer; weight decay and BatchNorm's running statistics would move what old "
        "tasks kept"
    )
    build_order = 90  # after the surgeries that change the architecture
    sb3_representable = False  # a mask per task: plain SB3 computes with one set of weights
    Params = PackNetParams
    params: PackNetParams
    State: ClassVar[type | None] = PackNetState

    def modify_networks(self, agent: BaseAlgorithm) -> None:
        """Masks, owners and hooks on every layer (on load too: the owners' values come from the zip)."""
        for role, optimizer in optimizers_by_role(agent).items():
            decays = [float(g.get("weight_decay", 0.0) or 0.0) for g in optimizer.param_groups]
            if max(decays) > 0:
                raise IncompatibleSurgeryError(
                    f"{self.key}: the {role} optimizer's weight decay ({max(decays)}) would move the frozen "
                    "weights of old tasks"
                )
        hook = self.mask_hook(weakref.ref(agent))
        for net in layout_of(agent).networks(agent.policy).values():
            for layer in _layers(net):
                if not is_masked(layer):
                    apply_mask(layer, th.ones_like(layer.weight))
                if not hasattr(layer, OWNER):
                    layer.register_buffer(OWNER, th.full_like(layer.weight_orig, -1, dtype=th.long))
                layer.register_forward_pre_hook(hook, prepend=True)
                layer.weight_orig.register_hook(lambda grad, layer=layer: grad * (getattr(layer, OWNER) < 0))
        if self.state(agent).packed > 0:
            self.freeze_shared(agent)

    def mask_hook(self, agent_ref: weakref.ref) -> Any:
        """The forward pre-hook that sets a layer's mask for the agent's task when it changed (a new
        tensor, not written in place: a graph may still hold the previous one). A plain function over
        a weak reference, so a copy of the network (a teacher, a snapshot) copies no agent."""
        surgery = self

        def hook(layer: nn.Module, _inputs: Any) -> None:
            agent = agent_ref()
            if agent is None:
                return
            owner = getattr(layer, OWNER)
            key = (current_task(agent), surgery.state(agent).packed, owner._version)
            if getattr(layer, "_packnet_key", None) == key:
                return
            layer.weight_mask = task_mask(owner, key[0], key[1]).to(layer.weight_mask.dtype)
            layer._packnet_key = key

        return hook

    def freeze_shared(self, agent: BaseAlgorithm) -> None:
        """After the first task only the free weights train: biases, norms, ``log_std`` are frozen."""
        masked = {
            id(layer.weight_orig)
            for net in layout_of(agent).online(agent.policy).values()
            for layer in _layers(net)
        }
        for p in agent.policy.parameters():
            if id(p) not in masked:
                p.requires_grad_(False)
                p.grad = None

    def on_task_switch(self, agent: BaseAlgorithm, switch: TaskSwitch) -> None:
        """Pack the finished task: keep the largest of its free weights, release (zero) the rest."""
        state = self.state(agent)
        with th.no_grad():
            for net in layout_of(agent).online(agent.policy).values():
                for layer in _layers(net):
                    owner = getattr(layer, OWNER)
                    kept = keep_largest_free(layer.weight_orig, owner, 1.0 - self.params.prune_fraction)
                    released = (owner < 0) & ~kept
                    owner[kept] = state.packed
                    layer.weight_orig[released] = 0.0
            for online, target in layout_of(agent).target_pairs(agent.policy):  # the targets follow
                for a, b in zip(_layers(online), _layers(target)):
                    getattr(b, OWNER).copy_(getattr(a, OWNER))
                    b.weight_orig.copy_(a.weight_orig)
        for optimizer in optimizers_by_role(agent).values():  # no momentum left to move kept weights
            for net in layout_of(agent).online(agent.policy).values():
                for layer in _layers(net):
                    moments = optimizer.state.get(layer.weight_orig, {})
                    for value in moments.values():
                        if isinstance(value, th.Tensor) and value.shape == layer.weight_orig.shape:
                            value[getattr(layer, OWNER) >= 0] = 0.0
        state.packed += 1
        self.freeze_shared(agent)
