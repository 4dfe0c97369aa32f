"""Lottery tickets: iterative magnitude pruning with rewinding, and weight rewinding on its own.

Frankle & Carbin 2019 (https://arxiv.org/abs/1803.03635); rewinding to an early step instead of
the initialization: Frankle et al. 2020 (https://arxiv.org/abs/1912.05671); in deep RL: Yu et
al. 2020 (https://arxiv.org/abs/1906.02768), Vischer et al. 2022 (https://arxiv.org/abs/2105.01648)::

    lottery_ticket_rewinding   at step k: θ_k ← θ (a snapshot); at step r: θ ← m ⊙ θ_k
                               (existing masks m kept; optimizer state of the rewound weights cleared)
    lottery_ticket_pruning     snapshot θ_k at step k; then every ``period`` steps, ``rounds`` times:
                               prune the fraction q of the remaining weights by |θ| (global),
                               rewind the survivors to θ_k;  final sparsity 1 − (1 − q)^rounds

The snapshot and the round counter are buffers of a module saved with the agent
(``agent.rls_modules``), so an interrupted run resumes where it was after ``load``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import check_order, param
from rlsurgery.nets import sync_targets
from rlsurgery.nets.masks import (
    apply_mask,
    effective_weight,
    lowest_score_masks,
    prunable_layers,
    sparsity,
    sync_target_masks,
    trained_weight,
)
from rlsurgery.nets.step_hooks import optimizers_by_role
from rlsurgery.nets.surgery import NetworkSurgery
from rlsurgery.pruning.base import MaskSurgery
from rlsurgery.runtime.callbacks import EveryStep


class WeightSnapshot(nn.Module):
    """Copies of the layers' weights and biases at one step, a flag and a round counter (saved with the
    agent)."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        for k, layer in enumerate(layers):
            self.register_buffer(f"weight_{k}", th.zeros_like(trained_weight(layer)))
            if layer.bias is not None:
                self.register_buffer(f"bias_{k}", th.zeros_like(layer.bias))
        self.register_buffer("taken", th.zeros((), dtype=th.bool))
        self.register_buffer("rounds_done", th.zeros((), dtype=th.long))

    def take(self, layers: list[nn.Module]) -> None:
        """θ_k ← θ (effective weights: masked entries stay zero)."""
        with th.no_grad():
            for k, layer in enumerate(layers):
                getattr(self, f"weight_{k}").copy_(effective_weight(layer))
                if layer.bias is not None:
                    getattr(self, f"bias_{k}").copy_(layer.bias)
        self.taken.fill_(True)

    def rewind(self, agent: BaseAlgorithm, layers: list[nn.Module]) -> None:
        """θ ← θ_k for every layer (masks kept), optimizer state of those weights cleared, targets synced."""
        with th.no_grad():
            for k, layer in enumerate(layers):
                weight = trained_weight(layer)
                weight.copy_(getattr(self, f"weight_{k}"))
                if layer.bias is not None:
                    layer.bias.copy_(getattr(self, f"bias_{k}"))
                for optimizer in optimizers_by_role(agent).values():  # moments from after step k do not apply
                    for p in (weight, layer.bias):
                        if p is not None:
                            optimizer.state.pop(p, None)
        sync_target_masks(agent)
        sync_targets(agent)


def snapshot_of(agent: BaseAlgorithm, key: str, layers: list[nn.Module]) -> WeightSnapshot:
    """The surgery's snapshot module, made (empty) the first time."""
    modules = agent.rls_modules  # type: ignore[attr-defined]
    if key not in modules:
        device = trained_weight(layers[0]).device
        modules[key] = WeightSnapshot(layers).to(device)
    return modules[key]


@dataclass
class RewindingParams:
    rewind_step: int = param(1000, "k: env step of the snapshot", ge=0)
    apply_step: int = param(50_000, "r: env step where the weights are rewound to the snapshot", ge=1)
    include_output: bool = param(True, "also rewind each network's output layer")

    def check(self) -> None:
        """k < r."""
        check_order(self, "rewind_step", "apply_step")


@register(proof="tests/pruning/test_lottery.py::test_rewinding_restores_the_snapshot")
class LotteryTicketRewinding(NetworkSurgery):
    """Rewind the weights to their values at an early step (keeping any pruning masks): a lottery ticket's
    re-initialization when combined with a pruning surgery."""

    key = "lottery_ticket_rewinding"
    Params = RewindingParams
    params: RewindingParams
    build_order = 95  # after the masks (90): the snapshot covers the final layers

    def layers(self, agent: BaseAlgorithm) -> list[nn.Module]:
        layers = [m for _, m in prunable_layers(agent, include_output=self.params.include_output)]
        if not layers:
            raise IncompatibleSurgeryError(
                f"{self.key}: {type(agent).__name__} has no Linear or Conv2d layer"
            )
        return layers

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        snapshot_of(agent, self.key, self.layers(agent))

    def advance(self, agent: BaseAlgorithm) -> None:
        snapshot = agent.rls_modules[self.key]  # type: ignore[attr-defined]
        t = agent.num_timesteps
        due = self.params.apply_step if snapshot.taken else self.params.rewind_step
        if snapshot.rounds_done > 0 or t < due:  # the common case: nothing to do at this step
            return
        layers = self.layers(agent)
        if not snapshot.taken:
            snapshot.take(layers)
        else:
            snapshot.rewind(agent, layers)
            snapshot.rounds_done.fill_(1)
            agent.logger.record("train/rewound_to_step", self.params.rewind_step)

    def callback(self, agent: BaseAlgorithm) -> Any:
        """Snapshot and rewind, as a training callback."""
        return EveryStep(self.advance)


@dataclass
class LotteryParams:
    amount_per_round: float = param(
        0.2, "q: fraction of the remaining weights pruned each round", gt=0.0, lt=1.0
    )
    rounds: int = param(5, "pruning rounds", ge=1)
    period: int = param(20_000, "env steps of training between two rounds", ge=1)
    rewind_step: int = param(1000, "k: env step of the snapshot the survivors rewind to", ge=0)
    include_output: bool = param(True, "also prune each network's output layer")


@register(proof="tests/pruning/test_lottery.py::test_lottery_ticket_rounds_prune_and_rewind")
class LotteryTicketPruning(MaskSurgery):
    """Iterative magnitude pruning: train, prune q of the remaining weights, rewind the survivors to step k,
    ``rounds`` times (round i at step k + i·period)."""

    key = "lottery_ticket_pruning"
    Params = LotteryParams
    params: LotteryParams

    def masks(self, weights: list[th.Tensor]) -> list[th.Tensor]:
        return [th.ones_like(w) for w in weights]  # placeholders: the rounds prune

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        super().apply(agent, replay)
        snapshot_of(agent, self.key, [m for _, m in self.layers(agent)])

    def target_sparsity(self, rounds: int) -> float:
        return 1 - (1 - self.params.amount_per_round) ** rounds

    def advance(self, agent: BaseAlgorithm) -> None:
        snapshot = agent.rls_modules[self.key]  # type: ignore[attr-defined]
        p, t = self.params, agent.num_timesteps
        done = int(snapshot.rounds_done)
        due = p.rewind_step + (done + 1) * p.period if snapshot.taken else p.rewind_step
        if done >= p.rounds or t < due:  # the common case: nothing to do at this step
            return
        layers = [m for _, m in self.layers(agent)]
        if not snapshot.taken:
            snapshot.take(layers)
            return
        # prune by the trained magnitudes, to the sparsity of round done + 1 (pruned weights stay pruned)
        scores = [
            effective_weight(m).abs().masked_fill(effective_weight(m) == 0, float("-inf")) for m in layers
        ]
        with th.no_grad():
            for layer, mask in zip(layers, lowest_score_masks(scores, self.target_sparsity(done + 1))):
                apply_mask(layer, mask)
        snapshot.rewind(agent, layers)
        snapshot.rounds_done.fill_(done + 1)
        reached = sparsity(layers)
        self.state(agent).result = {"sparsity": reached, "round": done + 1}
        agent.logger.record("train/sparsity", reached)

    def callback(self, agent: BaseAlgorithm) -> Any:
        """Snapshot, rounds of pruning and rewinding, as a training callback."""
        return EveryStep(self.advance)
