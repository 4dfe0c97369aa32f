"""Entropy regularisation: J = E[Σ r] + α · H(π), with a schedule on α.

Williams & Peng 1991; Mnih et al. 2016 (A3C, https://arxiv.org/abs/1602.01783);
Haarnoja et al. 2017 (soft Q-learning, https://arxiv.org/abs/1702.08165)::

    PPO:         loss = L_clip + α(t) · (−E[H(π(·|s))]) + c_v · L_V        (α(t) is ent_coef)
    DQN family:  y = r + γⁿ (1 − d) · V_soft(s'),   V_soft(s') = α · log Σ_a exp(Q_target(s', a) / α)

    SAC:         α fixed, or learnt so that E[−log π] tracks a target entropy H̄ (Haarnoja et al. 2018,
                 https://arxiv.org/abs/1812.05905): J(α) = E[−α (log π(a|s) + H̄)]

V_soft is the value of the entropy-regularised (Boltzmann) policy; as α → 0 it tends to
max_a Q_target, the plain DQN target. α follows a schedule (constant by default); on PPO
it is set before every rollout, on the DQN family it is read at every update; on SAC it
is SB3's own entropy machinery, set up with these values. Pair the
soft target with ``boltzmann_exploration`` to also act with the soft policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import torch as th

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import param
from rlsurgery.core.surgery import ON_POLICY_FAMILIES, Attachment, Surgery
from rlsurgery.runtime.schedules import ScheduleFields, ValueSchedule

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

    from rlsurgery.agents.dqn import SurgicalDQN
    from rlsurgery.core.batch import Batch


def soft_value(q_values: th.Tensor, alpha: float) -> th.Tensor:
    """V_soft = α · logsumexp(Q / α) over actions: (B, A) -> (B, 1)."""
    return alpha * th.logsumexp(q_values / alpha, dim=1, keepdim=True)


def soft_target(
    rewards: th.Tensor, dones: th.Tensor, discounts: th.Tensor | float, next_q: th.Tensor, alpha: float
) -> th.Tensor:
    """y = r + (1 − d) γⁿ V_soft(s') with V_soft from the target network's Q(s', ·)."""
    return rewards + (1 - dones) * discounts * soft_value(next_q, alpha)


@dataclass
class EntropyParams(ScheduleFields):
    schedule: Literal["linear", "exponential", "piecewise", "constant"] = param(
        "constant", "how α moves: constant, linear, exponential, piecewise"
    )
    initial: float = param(
        0.01, "α, the entropy weight, at the start (PPO: ent_coef; DQN: soft-target temperature)", gt=0.0
    )
    final: float = param(0.001, "α at the end (non-constant schedules)", gt=0.0)
    sac_alpha: Literal["fixed", "auto"] = param(
        "auto", "SAC: α fixed at `initial`, or learnt from `initial` towards the target entropy"
    )
    target_entropy: float | None = param(None, "SAC with sac_alpha=auto: target entropy (None: −dim(A))")


@register(proof="tests/exploration/test_entropy.py::test_ppo_entropy_term_and_dqn_soft_target")
class EntropyRegularization(Surgery):
    """An entropy bonus α(t)·H(π) (PPO, A2C), SAC's α / target entropy, or the soft target (DQN family)."""

    key = "entropy_regularization"
    attaches_to = (Attachment.LOSS, Attachment.SCHEDULE)
    Params = EntropyParams
    families = ("dqn", *ON_POLICY_FAMILIES, "sac")
    stages: ClassVar[dict[str, tuple[str, ...]]] = {
        "dqn": ("target",),
        **{family: ("on_rollout_start",) for family in ON_POLICY_FAMILIES},
    }
    params: EntropyParams

    def validate(self, agent: BaseAlgorithm) -> None:
        super().validate(agent)
        if agent.algorithm_family == "sac" and self.params.schedule != "constant":  # type: ignore[attr-defined]
            raise IncompatibleSurgeryError(
                f"{self.key}: on SAC α is fixed (sac_alpha=fixed) or learnt (sac_alpha=auto); "
                f"schedule {self.params.schedule!r} is for PPO, A2C and the DQN family"
            )

    def configure(self, agent: BaseAlgorithm) -> None:
        p = self.params
        self.schedule = ValueSchedule.from_fields(p, p.initial, p.final)
        family = agent.algorithm_family  # type: ignore[attr-defined]
        if family in ON_POLICY_FAMILIES:
            agent.ent_coef = p.initial  # type: ignore[attr-defined]
        elif family == "sac":  # SB3 builds α (fixed tensor, or log α and its optimizer) from these
            agent.ent_coef = p.initial if p.sac_alpha == "fixed" else f"auto_{p.initial}"  # type: ignore[attr-defined]
            if p.target_entropy is not None:
                agent.target_entropy = p.target_entropy  # type: ignore[attr-defined]

    def alpha(self, agent: BaseAlgorithm) -> float:
        """α at the agent's current step."""
        return self.schedule.at(agent)

    def on_rollout_start(self, agent: BaseAlgorithm) -> None:
        """PPO: ent_coef ← α(t) for the coming rollout's updates."""
        agent.ent_coef = self.alpha(agent)  # type: ignore[attr-defined]
        agent.logger.record("train/ent_coef", agent.ent_coef)  # type: ignore[attr-defined]

    def target(self, agent: SurgicalDQN, batch: Batch) -> None:
        """DQN family: the soft target y = r + (1 − d) γⁿ α logsumexp(Q_target(s', ·)/α)."""
        with th.no_grad():
            outputs = batch.next_target_outputs
            if outputs is None:
                outputs = agent.q_net_target.outputs(batch.next_observations)
            next_q = agent.q_net_target.q_values(outputs)
            batch.target = soft_target(batch.rewards, batch.dones, batch.discounts, next_q, self.alpha(agent))
