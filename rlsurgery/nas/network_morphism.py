"""Network morphism: grow a running agent, without changing what it computes, when learning stalls.

Wei, Wang, Rui & Chen 2016, "Network Morphism", https://arxiv.org/abs/1603.01670; Chen, Goodfellow &
Shlens 2016 (Net2Net, https://arxiv.org/abs/1511.05641); as moves of an architecture search: Elsken,
Metzen & Hutter 2017, https://arxiv.org/abs/1711.04528. Every ``check_freq`` env steps the mean
return of the latest training episodes (SB3's ``ep_info_buffer``) is compared with the best seen;
after ``patience`` checks without an improvement of more than δ, the next move of ``moves`` (in
turn) is applied to every MLP of every network (targets included, each keeping its own function)::

    widen   every hidden width h ↦ ⌈factor · h⌉: new units copy existing ones and the readers' weights
            of a copied unit are split among its copies   (Net2WiderNet: outputs unchanged)
    deepen  after the last hidden layer: h ↦ φ(I·h + 0), φ its activation when idempotent (ReLU),
            else none                                      (Net2DeeperNet: outputs unchanged)

The optimizers are rebuilt over the grown networks (parameters that survive a move keep their
optimizer state; the new and resized ones start without). A later ``learn`` call (its steps
restart at 0) checks on its own steps. The moves
made are recorded in ``applied``, so ``load`` rebuilds the grown shapes before loading the weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import MAX_WIDTH, param
from rlsurgery.core.surgery import Attachment
from rlsurgery.nets import transform_networks
from rlsurgery.nets.mlp import IDEMPOTENT, insert_identity_layer, mlp_stacks
from rlsurgery.nets.surgery import StructuralSurgery
from rlsurgery.nets.units import resize_hidden_layers

Move = Literal["widen", "deepen"]


def widen(agent: BaseAlgorithm, factor: float) -> None:
    """Every hidden layer of every network ⌈factor⌉ times wider, function-preserving."""
    resize_hidden_layers(agent, lambda s, i: math.ceil(factor * s.linear(i).out_features), None)


def deepen(agent: BaseAlgorithm) -> None:
    """An identity layer after the last hidden layer of every network, function-preserving."""

    def add(net: nn.Module) -> None:
        for stack in mlp_stacks(net):
            i = len(stack.hidden) - 1
            activation = stack.activation(i)
            keep = activation is not None and isinstance(activation, IDEMPOTENT)
            insert_identity_layer(stack, i, type(activation)() if keep else None)

    transform_networks(agent, add, copy_targets=False)


@dataclass
class MorphismParams:
    moves: list[str] = param(["widen", "deepen"], "the moves, made in turn: widen, deepen")
    factor: float = param(1.5, "widen: factor of every hidden width", gt=1.0, le=4.0)
    check_freq: int = param(5_000, "env steps between two checks of the training return", ge=1)
    patience: int = param(2, "checks without improvement before a move", ge=1)
    min_delta: float = param(0.0, "δ: improvement of the mean return that counts", ge=0.0)
    max_moves: int = param(4, "moves at most", ge=0, le=32)
    episodes: int = param(20, "latest training episodes in the mean return", ge=1, le=100)
    applied: list[str] = param([], "filled in while training: the moves made so far (for load)")

    def check(self) -> None:
        """Known moves."""
        bad = [m for m in [*self.moves, *self.applied] if m not in ("widen", "deepen")]
        if bad or not self.moves:
            raise ValueError(f"'moves' must be a non-empty list of widen and deepen (got {self.moves})")


@dataclass
class MorphismState:
    best: float = -math.inf
    """the best mean training return seen at a check"""
    stalled: int = 0
    """checks since the best improved (or since the last move)"""
    checked_at: int = 0
    """env step of the latest check"""
    history: list = field(default_factory=list)
    """(env step, move, widths or depth) of each move made"""


@register(proof="tests/nas/test_network_morphism.py::test_a_stalled_agent_grows_and_computes_the_same")
class NetworkMorphism(StructuralSurgery):
    """Grow every network by function-preserving widen/deepen moves whenever the training return stalls."""

    key = "network_morphism"
    cost_note = "each widen multiplies hidden-to-hidden work by factor²; each deepen adds a width² layer"
    Params = MorphismParams
    State = MorphismState
    attaches_to = (Attachment.NETWORK, Attachment.SCHEDULE)  # a training-time move, not an operation
    stages = {  # noqa: RUF012 - per family: after each env step, or after each rollout
        **dict.fromkeys(("dqn", "sac", "td3"), ("on_step",)),
        **dict.fromkeys(("ppo", "a2c", "trpo"), ("on_rollout_end",)),
    }
    build_order = 25  # a structural edit, replayed on load with the plain MLP edits
    params: MorphismParams

    @property
    def sb3_representable(self) -> bool:  # type: ignore[override]
        """Before its first move the agent's networks are SB3's."""
        return not self.params.applied

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        """At build: check the networks; on load, re-make the recorded moves (shapes only)."""
        self.stacks(agent)
        for move in self.params.applied:
            self.morph(agent, move)  # type: ignore[arg-type]

    def morph(self, agent: BaseAlgorithm, move: Move) -> None:
        """Make one function-preserving move on every network of ``agent``."""
        if move == "widen":
            widest = max(w for s in self.stacks(agent) for w in s.widths)
            if math.ceil(self.params.factor * widest) > MAX_WIDTH:
                raise IncompatibleSurgeryError(f"{self.key}: widening {widest} units passes {MAX_WIDTH}")
            widen(agent, self.params.factor)
        else:
            deepen(agent)

    def on_step(self, agent: BaseAlgorithm) -> None:
        """Check the training return every ``check_freq`` steps; make the next move after a stall."""
        p, state = self.params, self.state(agent)
        if agent.num_timesteps < state.checked_at:  # a new learn call: its steps restart
            state.checked_at = 0
        if agent.num_timesteps - state.checked_at < p.check_freq:
            return
        state.checked_at = agent.num_timesteps
        episodes = list(agent.ep_info_buffer or [])[-p.episodes :]
        if not episodes:
            return
        mean = float(np.mean([e["r"] for e in episodes]))
        if mean > state.best + p.min_delta:
            state.best, state.stalled = mean, 0
            return
        state.stalled += 1
        if state.stalled < p.patience or len(p.applied) >= p.max_moves:
            return
        move = p.moves[len(p.applied) % len(p.moves)]
        self.morph(agent, move)  # type: ignore[arg-type]
        self.record_choice(agent, "applied", [*p.applied, move])
        state.stalled = 0
        state.history.append([agent.num_timesteps, move, [s.widths for s in self.stacks(agent)]])
        agent.logger.record("train/morphism_moves", len(self.params.applied))

    on_rollout_end = on_step  # on-policy agents check after each rollout
