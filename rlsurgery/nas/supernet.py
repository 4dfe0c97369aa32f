"""The plumbing of the one-shot architecture searches (``darts``, ``enas``): a supernet of search
cells in every network of a DQN-family agent, architecture steps on held-out replay batches, and the
switch to discrete cells.

Every MLP of the Q network (and its target) keeps its first hidden layer and gets ``repeats``
:class:`~rlsurgery.nets.cells.SearchCell` s after it. The RL loss on the training batches trains the
operations' weights (SB3's own update); after every ``arch_every`` updates, :meth:`architecture_step`
samples another batch from the replay buffer — a fresh draw, not the update's own batch, though the
same buffer (not a fixed validation split as in DARTS's image tasks) — and steps the architecture
tensors α of the online cells with their own optimizer (α is never touched by the weight
optimizer: it has no gradient there). Each repeated cell has its own α (not one α shared by all
cells), so repeated cells may end with different genotypes, and every edge keeps one operation
(DARTS's image cells keep the two strongest inputs of each node). At ``discretize_at`` of the
training run each search cell becomes the discrete cell of :meth:`final_choice` (online and target
alike, each keeping its own trained weights of the chosen operations), the choice is recorded in
``chosen`` so that ``load`` rebuilds the discrete cells, and training goes on with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import param
from rlsurgery.core.state import transient
from rlsurgery.core.surgery import Attachment, require_discrete_actions
from rlsurgery.nets import transform_networks
from rlsurgery.nets.cells import (
    OPERATIONS,
    Cell,
    SearchCell,
    discretize,
    replace_hidden_layers_with_cells,
    search_cells,
)
from rlsurgery.nets.mlp import mlp_stacks
from rlsurgery.nets.modules import set_submodule
from rlsurgery.nets.surgery import StructuralSurgery
from rlsurgery.runtime.schedules import run_length


@dataclass
class SupernetParams:
    nodes: int = param(2, "N: nodes of each cell", ge=1, le=4)
    repeats: int = param(1, "cells stacked after the stem", ge=1, le=8)
    candidates: list[str] = param(
        list(OPERATIONS), f"candidate operations of every edge (of {', '.join(OPERATIONS)})"
    )
    arch_lr: float = param(3e-4, "learning rate of the architecture step", gt=0.0)
    arch_every: int = param(1, "weight updates between two architecture steps", ge=1)
    discretize_at: float = param(
        0.5, "fraction of the training run at which the cells become discrete", gt=0.0, le=1.0
    )
    chosen: list[list[int]] = param(
        [], "filled in at the switch: the candidate chosen on each edge of each cell (for load)"
    )

    def check(self) -> None:
        """Known candidates."""
        unknown = [c for c in self.candidates if c not in OPERATIONS]
        if unknown or not self.candidates:
            raise ValueError(f"'candidates': unknown {unknown} (known: {', '.join(OPERATIONS)})")


@dataclass
class SupernetState:
    optimizer: Any = transient()  # noqa: RUF009
    """the architecture tensors' optimizer (not saved: it starts again after ``load``)"""
    arch_steps: int = 0
    """architecture steps taken"""
    updates_seen: int = 0
    """the agent's update count at the latest architecture step"""
    discretized_at: int = -1
    """env step of the switch to discrete cells (-1: not yet)"""


class SupernetSurgery(StructuralSurgery):
    """Shared plumbing of ``darts`` and ``enas`` (see the module docstring)."""

    families = ("dqn",)
    attaches_to = (Attachment.NETWORK, Attachment.LOSS, Attachment.SCHEDULE)
    stages = ("after_update", "on_step")
    State = SupernetState
    build_order = 30  # a structural edit of the plain MLP stacks
    params: Any

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        require_discrete_actions(self.key, action_space)

    # --------------------------------------------------------------- the networks
    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        p = self.params

        def transform(net: nn.Module) -> None:
            chosen = iter(p.chosen)  # a discretized agent's choices, cell by cell (on load)

            def make(width: int) -> nn.Module:
                if p.chosen:
                    return Cell(width, [p.candidates[c] for c in next(chosen)], p.nodes)
                return SearchCell(width, p.nodes, p.candidates)

            for stack in mlp_stacks(net):
                try:
                    replace_hidden_layers_with_cells(stack, make, p.repeats)
                except (TypeError, ValueError) as error:
                    raise IncompatibleSurgeryError(f"{self.key}: {error}") from error

        self.stacks(agent)
        transform_networks(agent, transform, copy_targets=True)  # the target starts as a copy

    @staticmethod
    def cells(agent: BaseAlgorithm) -> list[SearchCell]:
        """The online Q network's search cells (empty once discrete)."""
        return search_cells(agent.q_net)

    def held_out_loss(self, agent: BaseAlgorithm) -> th.Tensor:
        """The RL loss of a batch sampled apart from the weight update's (the agent's full loss stages)."""
        batch = agent.sample_batch(agent.batch_size)
        return agent.compute_loss(batch)

    def make_optimizer(self, alphas: list[th.Tensor]) -> th.optim.Optimizer:
        """The optimizer of the architecture tensors (Adam at ``arch_lr``)."""
        return th.optim.Adam(alphas, lr=self.params.arch_lr)

    def step_architecture(self, agent: BaseAlgorithm, loss_of: Any) -> None:
        """One optimizer step of the online cells' α on ∂ loss_of() / ∂α (weights untouched)."""
        cells, state = self.cells(agent), self.state(agent)
        alphas = [cell.alpha for cell in cells]
        current = state.optimizer
        if current is None or [p for g in current.param_groups for p in g["params"]] != alphas:
            current = state.optimizer = self.make_optimizer(alphas)
        for cell, grad in zip(cells, self.architecture_gradients(agent, loss_of)):
            cell.alpha.grad = None if grad is None else grad.detach()
        current.step()
        for cell in cells:
            cell.alpha.grad = None

    def architecture_gradients(self, agent: BaseAlgorithm, loss_of: Any) -> list[th.Tensor]:
        """∂ loss_of() / ∂α for every online cell, leaving every weight's ``.grad`` as it was."""
        alphas = [cell.alpha for cell in self.cells(agent)]
        for alpha in alphas:
            alpha.requires_grad_(True)
        try:
            loss = loss_of()
            return list(th.autograd.grad(loss, alphas, allow_unused=True))
        finally:
            for alpha in alphas:
                alpha.requires_grad_(False)

    # --------------------------------------------------------------- to define
    def architecture_step(self, agent: BaseAlgorithm) -> None:
        """One step of the architecture tensors on a held-out batch."""
        raise NotImplementedError(f"{type(self).__name__} must define architecture_step()")

    def final_choice(self, cell: SearchCell) -> list[int]:
        """The candidate kept on each edge of ``cell`` at the switch."""
        raise NotImplementedError(f"{type(self).__name__} must define final_choice()")

    # --------------------------------------------------------------- stages
    def after_update(self, agent: BaseAlgorithm, batch: Any) -> None:
        """An architecture step every ``arch_every`` updates, until the switch."""
        state = self.state(agent)
        if not self.cells(agent) or agent._n_updates - state.updates_seen < self.params.arch_every:
            return
        state.updates_seen = agent._n_updates
        agent.policy.set_training_mode(True)
        self.architecture_step(agent)
        state.arch_steps += 1

    def on_step(self, agent: BaseAlgorithm) -> None:
        """Switch to discrete cells at ``discretize_at`` of the run."""
        if self.cells(agent) and agent.num_timesteps >= self.params.discretize_at * run_length(agent):
            self.discretize(agent)

    def discretize(self, agent: BaseAlgorithm) -> list[list[int]]:
        """Replace every search cell (online and target) by the discrete cell of :meth:`final_choice`."""
        choices = [self.final_choice(cell) for cell in self.cells(agent)]

        def transform(net: nn.Module) -> None:
            names = {id(m): n for n, m in net.named_modules()}
            for k, cell in enumerate(search_cells(net)):
                set_submodule(net, names[id(cell)], discretize(cell, choices[k]))

        transform_networks(agent, transform, copy_targets=False)
        self.record_choice(agent, "chosen", choices)
        self.state(agent).discretized_at = agent.num_timesteps
        if getattr(agent, "_logger", None) is not None:
            agent.logger.record("train/nas_discretized_at", agent.num_timesteps)
        return choices
