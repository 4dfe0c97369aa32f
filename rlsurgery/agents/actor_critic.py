"""What SurgicalSAC and SurgicalTD3 share: the critics' update and the actor's, as stages.

One gradient step runs (exclusive stages take at most one surgery)::

    sample        a Batch from the replay buffer (prioritized replay adds weights, indices)
    augment       composable: transform the batch's observations
    (SAC)         a ~ π(·|s) and log π(a|s), then the entropy coefficient's own step
    target        y = r + (1 − d) γ^k (min_i Q'_i(s', a') [− α log π(a'|s')])   -> batch.target
    estimate      each critic's Q_i(s, a)                                         -> batch.current
    critic_loss   (Q_i − y)² per sample and critic, and the TD error              -> batch.elementwise_loss,
                  mean_i |y − Q_i|                                                   batch.td_error
    weighting     composable: per-sample weights                                  -> batch.weights
    (reduce)      c · Σ_i mean_b w_b (Q_i − y)²_b   (c = ½ on SAC, 1 on TD3)
    aux_loss      composable: extra terms of the role "critic"
    before_step   composable: before the critics' optimizer steps
    actor_loss    SAC: mean(α log π − min_i Q_i(s, a~π));  TD3: −mean Q_1(s, μ(s))  -> batch.actor_loss
    aux_loss      composable: extra terms of the role "actor"
    before_step   composable: before the actor's optimizer steps
    (targets)     Polyak averaging of the target networks (SB3's schedule)
    after_update  composable hooks after each gradient step (priorities …)

(TD3 updates the actor and the targets every ``policy_delay`` gradient steps, as SB3 does.)
With no surgeries every default is SB3's own computation in SB3's order, so the agents
reproduce ``stable_baselines3.SAC`` and ``TD3`` exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import torch as th
from torch.nn import functional as F

from rlsurgery.agents.off_policy import OffPolicySurgicalMixin
from rlsurgery.core.batch import Batch
from rlsurgery.core.pipeline import AUX_LOSS, BEFORE_STEP, Stage

ACTOR_CRITIC_STAGES = (
    Stage("augment", True, "transform the sampled batch's observations before the losses"),
    Stage("target", False, "bootstrapped TD target of the critics"),
    Stage("estimate", False, "each critic's estimate of the taken actions"),
    Stage("critic_loss", False, "element-wise critic loss and per-sample TD error"),
    Stage("weighting", True, "per-sample weights of the critic loss before the reduction"),
    Stage("actor_loss", False, "the actor's loss"),
    AUX_LOSS,
    BEFORE_STEP,
    Stage("after_update", True, "hooks after each gradient step"),
    Stage("on_step", True, "hooks after each environment step"),
)


class ActorCriticSurgicalMixin(OffPolicySurgicalMixin):
    """Mixed into SB3's SAC and TD3 (before the SB3 class): the stages and losses they share."""

    STAGES: ClassVar[tuple[Stage, ...]] = ACTOR_CRITIC_STAGES
    #: c in the critic loss c · Σ_i MSE(Q_i, y): ½ in SB3's SAC, 1 in its TD3
    critic_loss_scale: ClassVar[float] = 1.0

    critic: Any
    actor: Any

    def critic_loss_of(self, batch: Batch) -> th.Tensor:
        """Run the estimate, critic-loss, weighting and ``aux_loss`` (``"critic"``) stages on a batch
        whose target is set; return the critics' loss."""
        run = self._pipeline.run
        run("estimate", self._default_estimate, self, batch)
        run("critic_loss", self._default_critic_loss, self, batch)
        self._pipeline.run_all("weighting", self, batch)
        return self._with_aux_losses("critic", batch, self.reduce_critic_loss(batch))

    def actor_loss_of(self, batch: Batch) -> th.Tensor:
        """Run the actor-loss and ``aux_loss`` (``"actor"``) stages; return the actor's loss."""
        self._pipeline.run("actor_loss", self._default_actor_loss, self, batch)
        return self._with_aux_losses("actor", batch, batch.actor_loss)

    def reduce_critic_loss(self, batch: Batch) -> th.Tensor:
        """c · Σ_i mean(w · (Q_i − y)²) over the critics i (plain means without weights)."""
        assert batch.elementwise_loss is not None, "the critic_loss stage must fill batch.elementwise_loss"
        columns = batch.elementwise_loss.unbind(dim=1)
        if batch.weights is None:
            total = sum(column.mean() for column in columns)
        else:
            weights = batch.weights.view(-1)
            total = sum((weights * column).mean() for column in columns)
        return self.critic_loss_scale * total  # type: ignore[return-value]

    def clip_norm(self, role: str) -> float | None:
        return None  # SB3 does not clip these updates

    def _role_loss(self, role: str, batch: Batch) -> th.Tensor:
        if role == "critic":
            return self.critic_loss_of(batch)  # the batch's target stays as it was computed
        self._sample_policy_actions(batch)  # the actor's sample at the current parameters
        return self.actor_loss_of(batch)

    def training_batches(self, batch_size: int, key: str) -> Iterator[Batch]:
        """Endless augmented replay batches with their critic target set (for the loss probes)."""
        for batch in super().training_batches(batch_size, key):
            yield self.ready_for_loss(batch)

    def ready_for_loss(self, batch: Batch) -> Batch:
        """``batch`` with what :meth:`step_loss` reads set: the entropy coefficient and the critic target."""
        batch.entropy_coef = self._entropy_coefficient_now()
        with th.no_grad():
            self._pipeline.run("target", self._default_target, self, batch)
        return batch

    def _entropy_coefficient_now(self) -> th.Tensor | None:
        """α as the next update would use it (SAC), None without one."""
        return None

    def _sample_policy_actions(self, batch: Batch) -> None:
        """What the actor loss needs from the actor before the update (SAC: a ~ π(·|s), log π)."""

    @staticmethod
    def _default_estimate(agent: Any, batch: Batch) -> None:
        batch.current = agent.critic(batch.observations, batch.actions)

    @staticmethod
    def _default_critic_loss(agent: Any, batch: Batch) -> None:
        # (Q_i − y)² per sample, one column per critic (SB3's mse_loss per critic, so the gradients
        # keep SB3's layout); the TD error mean_i |Q_i − y| is read back as √((Q_i − y)²): two ops
        # in place of five, equal to |Q_i − y| to the last bit or within one ulp
        target = batch.target
        losses = [F.mse_loss(q, target, reduction="none") for q in batch.current]
        batch.elementwise_loss = th.cat(losses, dim=1)
        with th.no_grad():
            batch.td_error = batch.elementwise_loss.sqrt().mean(dim=1)

    @staticmethod
    def _default_target(agent: Any, batch: Batch) -> None:
        raise NotImplementedError

    @staticmethod
    def _default_actor_loss(agent: Any, batch: Batch) -> None:
        raise NotImplementedError
