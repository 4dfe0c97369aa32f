"""Trust regions: keep each policy update within KL(π_new ‖ π_old) ≤ δ.

Schulman et al. 2015 (TRPO, https://arxiv.org/abs/1502.05477) and 2017 (PPO's adaptive KL
penalty, https://arxiv.org/abs/1707.06347). Three ways to hold the constraint::

    adaptive_kl   L = −E[r A] + β · KL,   after each rollout's update with measured KL d:
                  d > 1.5 δ → β ← 2β;   d < δ / 1.5 → β ← β / 2
    early_stop    the epoch loop stops before any step once the measured KL exceeds δ
    trpo          sb3-contrib's TRPO (conjugate gradient + line search) with max KL δ:
                  the exact constrained step, on the ``trpo`` agent

KL is measured on each minibatch with the estimator E[(r − 1) − log r] of KL(π_old ‖ π)
(Schulman's k3; the same quantity SB3's ``target_kl`` uses); TRPO's line search checks the
exact mean KL(π_new ‖ π_old) of the whole batch. The adaptive β (and the KL measured since the
last rollout) is the surgery's :class:`TrustRegionState`, saved with the model: a loaded model
goes on with its β.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch as th

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import param
from rlsurgery.core.surgery import Attachment, Surgery

if TYPE_CHECKING:
    from rlsurgery.agents.ppo import SurgicalPPO
    from rlsurgery.core.batch import PolicyBatch


def kl_penalty_loss(ratio: th.Tensor, advantages: th.Tensor, log_ratio: th.Tensor, beta: float) -> th.Tensor:
    """−E[r A] + β · E[(r − 1) − log r]  (the KL-penalised surrogate)."""
    kl = ((ratio - 1) - log_ratio).mean()
    return -(ratio * advantages).mean() + beta * kl


def adapt_beta(beta: float, measured_kl: float, target_kl: float) -> float:
    """β doubled above 1.5 δ, halved below δ / 1.5, kept in between."""
    if measured_kl > 1.5 * target_kl:
        return beta * 2.0
    if measured_kl < target_kl / 1.5:
        return beta / 2.0
    return beta


@dataclass
class TrustRegionParams:
    variant: Literal["adaptive_kl", "early_stop", "trpo"] = param(
        "adaptive_kl", "adaptive_kl (KL penalty), early_stop (stop at δ), or trpo (the trpo agent)"
    )
    target_kl: float = param(0.01, "δ, the KL allowed per update", gt=0.0)
    beta: float = param(1.0, "adaptive_kl: initial penalty coefficient β", gt=0.0)


@dataclass
class TrustRegionState:
    beta: float | None = None
    """adaptive_kl: the current penalty coefficient β (None until configured: the initial β)"""
    kls: list[float] = field(default_factory=list)
    """adaptive_kl: the KL measured on each minibatch since the last rollout"""


@register(proof="tests/policy/test_trust_region.py::test_measured_kl_respects_delta_after_updates")
class TrustRegion(Surgery):
    """A KL trust region per update: adaptive penalty, early stop, or TRPO's exact step."""

    key = "trust_region"
    attaches_to = (Attachment.LOSS,)
    Params = TrustRegionParams
    families = ("ppo", "trpo")
    stages: ClassVar[dict[str, tuple[str, ...]]] = {
        "ppo": ("policy_loss", "kl_stop", "after_update", "on_rollout_start")
    }
    params: TrustRegionParams
    State = TrustRegionState

    def stages_for(self, family: str | None) -> tuple[str, ...]:
        if family != "ppo":
            return ()
        if self.params.variant == "adaptive_kl":
            return ("policy_loss", "after_update", "on_rollout_start")
        return ("kl_stop",)

    def validate(self, agent: Any) -> None:
        super().validate(agent)
        family = agent.algorithm_family
        if self.params.variant == "trpo" and family != "trpo":
            raise IncompatibleSurgeryError(
                f"{self.key}: variant trpo is sb3-contrib's TRPO: use the trpo agent "
                "(SurgicalTRPO, recipe algo: trpo)"
            )
        if family == "trpo" and self.params.variant != "trpo":
            raise IncompatibleSurgeryError(
                f"{self.key}: on TRPO only variant trpo applies (got {self.params.variant})"
            )

    def configure(self, agent: Any) -> None:
        state = self.state(agent)
        if state.beta is None:  # a loaded model goes on with its own β
            state.beta = self.params.beta
        if agent.algorithm_family == "trpo":
            agent.target_kl = self.params.target_kl

    # ---------------------------------------------------------------- adaptive KL penalty
    def policy_loss(self, agent: SurgicalPPO, batch: PolicyBatch) -> None:
        """−E[r A] + β · KL(π_old ‖ π) (estimated on the minibatch)."""
        log_ratio = batch.log_prob - batch.old_log_prob
        beta = self.state(agent).beta
        batch.policy_loss = kl_penalty_loss(batch.ratio, batch.advantages, log_ratio, beta)
        batch.extras["kl_beta"] = beta

    def after_update(self, agent: SurgicalPPO, batch: PolicyBatch) -> None:
        """Record the minibatch's measured KL."""
        self.state(agent).kls.append(float(batch.approx_kl))

    def on_rollout_start(self, agent: SurgicalPPO) -> None:
        """Adapt β from the KL measured during the last update (mean over its minibatches)."""
        state = self.state(agent)
        if state.kls:
            measured = float(np.mean(state.kls))
            state.beta = adapt_beta(state.beta, measured, self.params.target_kl)
            agent.logger.record("train/kl_beta", state.beta)
            state.kls.clear()

    # ---------------------------------------------------------------- early stop
    def kl_stop(self, agent: SurgicalPPO, batch: PolicyBatch) -> bool:
        """Stop the update once the measured KL exceeds δ."""
        return float(batch.approx_kl) > self.params.target_kl
