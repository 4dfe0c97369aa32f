"""PPO ratio clipping with a clip-range schedule, dual-clip PPO and value clipping.

Schulman et al. 2017 (https://arxiv.org/abs/1707.06347); dual clip: Ye et al. 2020
(https://arxiv.org/abs/1912.09729); value clipping as in OpenAI Baselines' PPO2::

    r = π(a|s) / π_old(a|s)
    L_clip = −E[ min(r A, clip(r, 1 − ε(t), 1 + ε(t)) A) ]
    dual clip (c > 1), for A < 0:  L = −E[ max( min(r A, clip(r, 1 ± ε) A), c A ) ]
    value clip:  L_V = E[ max( (V − R)², (V_old + clip(V − V_old, −ε_v, ε_v) − R)² ) ]

ε(t) follows a schedule (constant, linear, exponential or piecewise). Dual clipping bounds
the loss of a very large ratio on a negative advantage, which the plain clip leaves
unbounded. Value clipping here is the pessimistic max of the clipped and unclipped errors
(SB3's own ``clip_range_vf`` uses the clipped error alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch as th

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.core.surgery import Attachment, Surgery
from rlsurgery.runtime.schedules import ScheduleFields, ValueSchedule

if TYPE_CHECKING:
    from rlsurgery.agents.ppo import SurgicalPPO
    from rlsurgery.core.batch import PolicyBatch


def clipped_surrogate(
    ratio: th.Tensor, advantages: th.Tensor, clip_range: float, dual_clip: float | None = None
) -> th.Tensor:
    """−E[min(rA, clip(r, 1 ± ε)A)], with the dual clip max(·, cA) on negative advantages."""
    surrogate = th.min(advantages * ratio, advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range))
    if dual_clip is not None:
        bounded = th.max(surrogate, dual_clip * advantages)
        surrogate = th.where(advantages < 0, bounded, surrogate)
    return -surrogate.mean()


def clipped_value_loss(
    values: th.Tensor, old_values: th.Tensor, returns: th.Tensor, clip_range: float
) -> th.Tensor:
    """E[max((V − R)², (V_old + clip(V − V_old, ±ε_v) − R)²)]."""
    clipped = old_values + th.clamp(values - old_values, -clip_range, clip_range)
    return th.max((values - returns).pow(2), (clipped - returns).pow(2)).mean()


@dataclass
class ClippingParams(ScheduleFields):
    schedule: Literal["linear", "exponential", "piecewise", "constant"] = param(
        "constant", "how ε moves: constant, linear, exponential, piecewise"
    )
    initial: float = param(0.2, "clip range ε at the start", gt=0.0, lt=1.0)
    final: float = param(0.05, "clip range ε at the end (non-constant schedules)", gt=0.0, lt=1.0)
    dual_clip: float | None = param(None, "c > 1 of dual-clip PPO (None: off)", gt=1.0)
    value_clip: float | None = param(None, "ε_v of the pessimistic value clipping (None: off)", gt=0.0)


@register(proof="tests/policy/test_clipping.py::test_clipped_objective_on_crafted_ratios_and_advantages")
class PolicyGradientClipping(Surgery):
    """PPO's clipped surrogate with an ε schedule, optional dual clip and value clipping."""

    key = "policy_gradient_clipping"
    attaches_to = (Attachment.LOSS, Attachment.SCHEDULE)
    Params = ClippingParams
    families = ("ppo",)
    stages = ("policy_loss", "value_loss")
    params: ClippingParams

    def stages_for(self, family: str | None) -> tuple[str, ...]:
        return ("policy_loss", "value_loss") if self.params.value_clip is not None else ("policy_loss",)

    def configure(self, agent: SurgicalPPO) -> None:
        p = self.params
        self.schedule = ValueSchedule.from_fields(p, p.initial, p.final)

    def policy_loss(self, agent: SurgicalPPO, batch: PolicyBatch) -> None:
        """The clipped surrogate at ε(t); ``batch.clip_range`` records ε(t)."""
        batch.clip_range = self.schedule.at(agent)
        batch.policy_loss = clipped_surrogate(
            batch.ratio, batch.advantages, batch.clip_range, self.params.dual_clip
        )

    def value_loss(self, agent: SurgicalPPO, batch: PolicyBatch) -> None:
        """The pessimistic clipped value loss."""
        batch.clip_range_vf = self.params.value_clip
        batch.value_loss = clipped_value_loss(
            batch.values, batch.old_values, batch.returns, self.params.value_clip
        )
