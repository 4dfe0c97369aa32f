"""SVD decomposition: every Linear layer W (out × in) replaced by its best rank-k approximation.

Eckart–Young: the truncated SVD is the closest rank-k matrix in Frobenius norm, and its error is
the norm of the dropped singular values (Denton et al. 2014, https://arxiv.org/abs/1404.0736, on
compressing trained networks this way)::

    W = U Σ Vᵀ,   W_k = U_k Σ_k V_kᵀ = (U_k Σ_k^½)(Σ_k^½ V_kᵀ) = up · down
    ‖W − W_k‖_F = √(Σ_{i>k} σ_i²)
    k = rank, or (rank 0) the smallest k with Σ_{i≤k} σ_i² ≥ energy · Σ_i σ_i²

A layer is factorised only where the factors are smaller than the matrix, k·(in + out) < in·out;
the others stay as they are (rank 0 in ``chosen``). The Linear becomes a
:class:`~rlsurgery.nets.blocks.LowRankLinear` (down: k × in, up: out × k with the bias), so a forward
pass costs k·(in + out) multiply-adds instead of in·out. Both factors carry √Σ_k, so training can go
on in the factorised form. Target networks are loaded from their online networks afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import MAX_WIDTH, param
from rlsurgery.nets import transform_networks
from rlsurgery.nets.blocks import LowRankLinear
from rlsurgery.nets.layout import online_networks, target_pairs
from rlsurgery.nets.modules import linear_layers, replace_modules
from rlsurgery.nets.surgery import NetworkSurgery
from rlsurgery.pruning.neurons import parameter_count


def energy_rank(singular_values: th.Tensor, energy: float) -> int:
    """The smallest k with Σ_{i≤k} σ_i² ≥ energy · Σ_i σ_i² (σ in descending order)."""
    squares = singular_values.double().square()
    kept = th.cumsum(squares, 0) / squares.sum().clamp_min(1e-300)
    return min(int(th.searchsorted(kept, th.tensor(energy, dtype=kept.dtype) - 1e-12)) + 1, len(squares))


def truncated_svd(weight: th.Tensor, rank: int) -> tuple[th.Tensor, th.Tensor]:
    """(up, down) with up · down = U_k Σ_k V_kᵀ, the best rank-k approximation of ``weight``;
    up = U_k Σ_k^½ (out × k), down = Σ_k^½ V_kᵀ (k × in)."""
    u, s, vh = th.linalg.svd(weight.detach().double(), full_matrices=False)
    root = s[:rank].sqrt()
    return (u[:, :rank] * root).to(weight.dtype), (root[:, None] * vh[:rank]).to(weight.dtype)


def shrinks(linear: nn.Linear, rank: int) -> bool:
    """Do rank-k factors hold fewer weights than the matrix: k·(in + out) < in·out?"""
    return (
        rank > 0
        and rank * (linear.in_features + linear.out_features) < linear.in_features * linear.out_features
    )


def factorised(linear: nn.Linear, rank: int) -> LowRankLinear:
    """The LowRankLinear of ``linear``'s rank-k truncated SVD (its bias kept)."""
    layer = LowRankLinear(linear.in_features, linear.out_features, rank, bias=linear.bias is not None)
    up, down = truncated_svd(linear.weight, rank)
    with th.no_grad():
        layer.up.weight.copy_(up)
        layer.down.weight.copy_(down)
        if linear.bias is not None:
            layer.up.bias.copy_(linear.bias)
    return layer


@dataclass
class SvdDecompositionParams:
    rank: int = param(
        0, "k: singular values kept per layer (0: chosen per layer by energy)", ge=0, le=MAX_WIDTH
    )
    energy: float = param(0.9, "with rank 0: the share of Σσ² the kept singular values hold", gt=0.0, le=1.0)
    chosen: list[int] = param(
        [],
        "filled in when applied: the rank of every Linear of the online networks in order, 0 where "
        "left whole (for load)",
    )


@register(proof="tests/lowrank/test_svd.py::test_svd_decomposition_factorises_every_layer_it_shrinks")
class SvdDecomposition(NetworkSurgery):
    """Replace each Linear layer by the two factors of its truncated SVD (fewer weights, same shape)."""

    key = "svd_decomposition"
    Params = SvdDecompositionParams
    params: SvdDecompositionParams
    sb3_representable = False  # factorised layers are not an SB3 net_arch
    build_order = 24  # after the structural edits and pruning (20-22), before wrappers (25) and masks (90)

    def ranks(self, agent: BaseAlgorithm) -> list[int]:
        """k of every Linear of the online networks, in order (0: left whole)."""
        ranks = []
        for net in online_networks(agent).values():
            for _, linear in linear_layers(net):
                if self.params.rank:
                    k = min(self.params.rank, linear.in_features, linear.out_features)
                else:
                    k = energy_rank(th.linalg.svdvals(linear.weight.detach().double()), self.params.energy)
                ranks.append(k if shrinks(linear, k) else 0)
        return ranks

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        nets = list(online_networks(agent).values())
        if not any(linear_layers(net) for net in nets):
            raise IncompatibleSurgeryError(
                f"{self.key}: {type(agent).__name__}'s networks have no Linear layer"
            )
        before = parameter_count(agent)
        if not replay or not self.params.chosen:
            self.record_choice(agent, "chosen", self.ranks(agent))
        chosen = iter(self.params.chosen)
        plans = {id(net): {name: next(chosen, 0) for name, _ in linear_layers(net)} for net in nets}
        for online, target in target_pairs(agent):
            plans[id(target)] = plans.get(id(online), {})

        def factorise(net: nn.Module) -> None:
            plan = plans.get(id(net), {})
            replace_modules(
                net,
                lambda name, module: isinstance(module, nn.Linear) and plan.get(name, 0) > 0,
                lambda name, module: factorised(module, plan[name]),
            )

        transform_networks(agent, factorise, copy_targets=True)
        self.state(agent).result.update(
            parameters_before=before,
            parameters_after=parameter_count(agent),
            factorised_layers=sum(1 for k in self.params.chosen if k),
        )
