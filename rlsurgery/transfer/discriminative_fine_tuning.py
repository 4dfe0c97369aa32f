"""Discriminative fine-tuning: the source's weights, each layer group at its own learning rate.

Howard & Ruder 2018 (ULMFiT), https://arxiv.org/abs/1801.06146, with L layer groups counted from the
input (l = 1 … L; :func:`~rlsurgery.nets.transfer.depth_groups`)::

    η_l = η · ξ^(L − l)        (ULMFiT: ξ = 1/2.6; the output group keeps η)

η is the agent's own rate, its schedule and other rate surgeries included (the factor ξ^(L−l) is the
group's ``lr_scale``, see :mod:`rlsurgery.nets.groups`). Every optimizer (SAC/TD3: actor and critic)
gets the groups of the networks it trains. ``layer_wise_learning_rates`` applies a decay per module
to an agent trained from scratch; this is the transfer form, on the core's layer groups.
"""

from __future__ import annotations

from dataclasses import dataclass

from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.nets.groups import regroup
from rlsurgery.nets.step_hooks import optimizers_by_role
from rlsurgery.nets.transfer import agent_depth_groups
from rlsurgery.transfer.source import SourceFields, TransferSurgery


@dataclass
class DiscriminativeParams(SourceFields):
    decay: float = param(
        1 / 2.6, "ξ: the rate of a group is ξ times the rate of the group above it", gt=0.0, le=1.0
    )


def group_rate_scales(n_groups: int, decay: float) -> list[float]:
    """ξ^(L − l) for the groups from the top (l = L) down (l = 1): [1, ξ, ξ², …]."""
    return [decay**depth for depth in range(n_groups)]


@register(proof="tests/transfer/test_transfer.py::test_discriminative_rates_follow_the_formula_per_group")
class DiscriminativeFineTuning(TransferSurgery):
    """Copy the source's weights; train layer group l of L at η·ξ^(L−l)."""

    key = "discriminative_fine_tuning"
    Params = DiscriminativeParams
    params: DiscriminativeParams
    conflicts = ("layer_wise_learning_rates",)
    conflict_reason = "both set one learning rate per layer"

    def arrange(self, agent: BaseAlgorithm) -> None:
        for role in optimizers_by_role(agent):
            groups = agent_depth_groups(agent, role, include_frozen=True)  # gradual unfreezing's too
            regroup(agent, role, list(zip(groups, group_rate_scales(len(groups), self.params.decay))))
