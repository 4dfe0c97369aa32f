"""Progressive neural networks: a new column per task, lateral connections from the frozen old columns.

Rusu et al. 2016, https://arxiv.org/abs/1606.04671. Each MLP whose last layer is the network's output
(DQN's Q network, TD3's actor and every critic of TD3) becomes a stack of columns, one per task. With
h_l^(k) the l-th layer of column k and f its activation::

    h_1^(k) = f(W_1^(k) x)
    h_l^(k) = f(W_l^(k) h_{l−1}^(k) + Σ_{j<k} U_l^(k:j) h_{l−1}^(j))        l ≥ 2 (the output layer has no f)

At each task switch a column is added: its weights start as a copy of the latest column's and its
lateral adapters U at zero, so it starts as the function the agent had; every older column (and its
laterals) is frozen. Acting on task t uses column t (:func:`rlsurgery.runtime.tasks.on_task`), which
reads only columns ≤ t, all frozen: an old task's outputs are bit-identical after later tasks train.
The number of columns is the surgery's state, so ``load`` rebuilds them before the weights are set.
The columns must be plain Linear/activation MLPs (SB3's ``create_mlp``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.surgery import Attachment, Surgery
from rlsurgery.nets import transform_networks
from rlsurgery.nets.layout import layout_of
from rlsurgery.nets.masks import PRUNING_KEYS
from rlsurgery.nets.mlp import mlp_stacks, swap
from rlsurgery.nets.modules import detached_copy
from rlsurgery.runtime.tasks import TaskSwitch, current_task


@dataclass
class ProgressiveState:
    columns: int = 1
    """columns of every progressive stack (one per task started)"""


def _blocks(seq: nn.Sequential) -> list[tuple[nn.Linear, list[nn.Module]]]:
    """(Linear, the activations after it) for each layer of a plain MLP Sequential."""
    blocks: list[tuple[nn.Linear, list[nn.Module]]] = []
    for module in seq:
        if type(module) is nn.Linear:
            blocks.append((module, []))
        elif blocks and not list(module.parameters()):
            blocks[-1][1].append(module)
        else:
            raise IncompatibleSurgeryError(
                f"progressive_neural_networks: a column must be a plain Linear/activation MLP (found "
                f"{type(module).__name__})"
            )
    return blocks


class ProgressiveColumns(nn.Module):
    """Columns of one MLP with lateral adapters; acts with the column that ``task_of()`` names."""

    def __init__(self, seq: nn.Sequential, task_of: Callable[[], int]) -> None:
        super().__init__()
        _blocks(seq)
        self.columns = nn.ModuleList([seq])
        #: laterals[k - 1][l - 1]: U_l^(k:·), from the concatenated layer l−1 of columns < k
        self.laterals = nn.ModuleList()
        self.task_of = task_of

    def add_column(self) -> None:
        """A copy of the latest column, zero laterals from every existing column; the old ones frozen."""
        latest = self.columns[-1]
        widths = [linear.out_features for linear, _ in _blocks(latest)]
        k = len(self.columns)
        adapters = nn.ModuleList()
        for linear, _ in _blocks(latest)[1:]:
            lateral = nn.Linear(k * widths[len(adapters)], linear.out_features, bias=False)
            nn.init.zeros_(lateral.weight)
            adapters.append(lateral)
        self.columns.append(detached_copy(latest))
        self.laterals.append(adapters)
        for module in [*self.columns[:-1], *self.laterals[:-1]]:
            module.requires_grad_(False)

    def forward(self, x: th.Tensor) -> th.Tensor:
        active = min(max(self.task_of(), 0), len(self.columns) - 1)
        previous: list[th.Tensor] = []  # layer l−1 of every column computed so far
        out = x
        for k in range(active + 1):
            h, layers = x, []
            for depth, (linear, activations) in enumerate(_blocks(self.columns[k])):
                z = linear(h)
                if k > 0 and depth > 0:
                    lateral = self.laterals[k - 1][depth - 1]
                    z = z + lateral(th.cat([p[depth - 1] for p in previous], dim=-1))
                for activation in activations:
                    z = activation(z)
                h = z
                layers.append(h)
            previous.append(layers)
            out = h
        return out


def progressive_stacks(net: nn.Module) -> list[ProgressiveColumns]:
    return [m for m in net.modules() if isinstance(m, ProgressiveColumns)]


@register(
    proof="tests/continual/test_continual.py::test_progressive_columns_freeze_old_tasks_and_start_as_the_old_function"
)
class ProgressiveNeuralNetworks(Surgery):
    """A column per task with lateral adapters from the frozen columns of the earlier tasks."""

    key = "progressive_neural_networks"
    attaches_to = (Attachment.NETWORK, Attachment.SCHEDULE)
    families = ("dqn", "td3")
    refusals: ClassVar[dict[str, str]] = {
        "ppo": "its MLPs are read by heads outside them (action_net, value_net)",
        "a2c": "its MLPs are read by heads outside them (action_net, value_net)",
        "sac": "the actor's MLP is read by heads outside it (mu, log_std)",
    }
    family_notes: ClassVar[dict[str, str]] = {"td3": "actor and both critics"}
    build_order = 90
    sb3_representable = False
    State: ClassVar[type | None] = ProgressiveState
    conflicts = (
        "packnet",
        *PRUNING_KEYS,
        "feature_alignment",
        "domain_adversarial_training",
        "backtranslation",
    )
    conflict_reason = (
        "a mask per task and columns per task do not stack, and the columns have no single latent layer to "
        "read"
    )

    def modify_networks(self, agent: BaseAlgorithm) -> None:
        """Columns around every output MLP; on load, as many as were saved."""

        def task() -> int:
            return current_task(agent)

        def wrap(net: nn.Module) -> None:
            for stack in [s for s in mlp_stacks(net) if not s.external]:
                swap(net, stack.seq, ProgressiveColumns(stack.seq, task))

        trained_extractors = [
            name
            for name, net in layout_of(agent).online(agent.policy).items()
            for extractor in [getattr(net, "features_extractor", None)]
            if extractor is not None and any(True for _ in extractor.parameters())
        ]
        if trained_extractors:
            raise IncompatibleSurgeryError(
                f"{self.key}: the {', '.join(trained_extractors)} network's features extractor has weights "
                "of its own (a CNN), which the columns would share and old tasks would not keep"
            )
        transform_networks(agent, wrap, copy_targets=True)
        if not any(progressive_stacks(net) for net in layout_of(agent).online(agent.policy).values()):
            raise IncompatibleSurgeryError(f"{self.key}: the agent has no MLP whose last layer is an output")
        for _ in range(self.state(agent).columns - 1):
            self._add_columns(agent)

    def _add_columns(self, agent: BaseAlgorithm) -> None:
        transform_networks(
            agent, lambda net: [stack.add_column() for stack in progressive_stacks(net)], copy_targets=True
        )

    def on_task_switch(self, agent: BaseAlgorithm, switch: TaskSwitch) -> None:
        """A new column for the next task."""
        self._add_columns(agent)
        self.state(agent).columns += 1
