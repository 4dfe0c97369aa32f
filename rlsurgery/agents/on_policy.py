"""What the surgical on-policy agents (SurgicalPPO, SurgicalA2C, SurgicalTRPO) share.

Around collection they run the composable ``on_rollout_start`` / ``on_rollout_end`` hooks;
``predict`` goes through the exclusive ``act`` stage (default: the policy's own), as for
every surgical agent (:class:`~rlsurgery.agents.surgical.SurgicalMixin`).

PPO and A2C share one loss pipeline on a :class:`~rlsurgery.core.batch.PolicyBatch`::

    augment        composable: transform the minibatch's observations
    (evaluate)     V(s), log π(a|s), H under the current parameters           (the policy)
    advantages     normalise the advantages                                   -> batch.advantages
    (ratio)        PPO only: r = exp(log π − log π_old)                       -> batch.ratio
    policy_loss    PPO: clipped surrogate; A2C: −E[A log π]                   -> batch.policy_loss
    value_loss     (clipped) MSE to the returns                               -> batch.value_loss
    entropy_loss   −E[H]                                                      -> batch.entropy_loss
    (total)        policy_loss + ent_coef·entropy_loss + vf_coef·value_loss
    aux_loss       composable: extra terms for the roles "policy" and "value", added to the total
    before_step    composable: hooks after backward and clipping, before the optimizer step
    after_update   composable hooks after each optimizer step

Each agent's defaults are its SB3 parent's own computations, in the same order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F

from rlsurgery.agents.surgical import SurgicalMixin
from rlsurgery.core.batch import PolicyBatch
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.pipeline import AUX_LOSS, BEFORE_STEP, Stage

#: stages every surgical on-policy agent has
ON_POLICY_STAGES = (
    Stage("on_rollout_start", True, "hooks before each rollout"),
    Stage("on_rollout_end", True, "hooks after each rollout"),
    Stage("act", False, "action selection of predict"),
)

#: the loss stages of the agents whose update is one loss on minibatches of the rollout (PPO, A2C)
POLICY_LOSS_STAGES = (
    Stage("augment", True, "transform the minibatch's observations before the losses"),
    Stage("advantages", False, "advantage normalisation"),
    Stage("policy_loss", False, "policy-gradient loss"),
    Stage("value_loss", False, "value-function loss"),
    Stage("entropy_loss", False, "entropy term"),
    AUX_LOSS,
    BEFORE_STEP,
    Stage("after_update", True, "hooks after each optimizer step"),
)


class OnPolicySurgicalMixin(SurgicalMixin):
    """Mixed into SB3 ``OnPolicyAlgorithm`` subclasses (before the SB3 class)."""

    STAGES: ClassVar[tuple[Stage, ...]] = ON_POLICY_STAGES

    def collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
    ) -> bool:
        """SB3's rollout collection between the ``on_rollout_start`` and ``on_rollout_end`` hooks."""
        self._pipeline.run_all("on_rollout_start", self)
        result = super().collect_rollouts(env, callback, rollout_buffer, n_rollout_steps)  # type: ignore[misc]
        self._pipeline.run_all("on_rollout_end", self)
        return result

    def _clip_ranges(self) -> tuple[float | None, float | None]:
        """ε and ε_vf of a PPO update now (None for agents without them)."""
        return None, None

    def training_batches(self, batch_size: int, key: str) -> Iterator[PolicyBatch]:
        """Endless augmented minibatches of the last complete rollout (for the loss probes)."""
        buffer = self.rollout_buffer  # type: ignore[attr-defined]
        if not buffer.full:
            raise IncompatibleSurgeryError(f"{key}: the agent has no complete rollout yet; train it first")
        clip, clip_vf = self._clip_ranges()
        while True:
            for data in buffer.get(batch_size):
                batch = PolicyBatch.from_rollout(data, clip, clip_vf)
                self._pipeline.run_all("augment", self, batch)
                yield batch


class PolicyLossMixin(OnPolicySurgicalMixin):
    """The loss pipeline of PPO and A2C (see the module docstring); agents give the defaults of
    ``advantages`` and ``policy_loss``, and PPO the ratio."""

    ent_coef: float
    vf_coef: float

    def compute_loss(self, batch: PolicyBatch) -> th.Tensor:
        """The augment stage, then :meth:`loss_of`: the total loss of one minibatch (``batch`` is
        filled in place)."""
        if isinstance(self.action_space, spaces.Discrete):  # type: ignore[attr-defined]
            batch.actions = batch.actions.long().flatten()
        self._pipeline.run_all("augment", self, batch)
        return self.loss_of(batch)

    def loss_of(self, batch: PolicyBatch) -> th.Tensor:
        """Evaluate the policy and run the loss stages on an augmented ``batch``; return the total loss."""
        values, log_prob, entropy = self.policy.evaluate_actions(batch.observations, batch.actions)  # type: ignore[attr-defined]
        batch.values, batch.log_prob, batch.entropy = values.flatten(), log_prob, entropy
        run = self._pipeline.run
        run("advantages", self._default_advantages, self, batch)
        self._before_policy_loss(batch)
        run("policy_loss", self._default_policy_loss, self, batch)
        run("value_loss", default_value_loss, self, batch)
        run("entropy_loss", default_entropy_loss, self, batch)
        loss = batch.policy_loss + self.ent_coef * batch.entropy_loss + self.vf_coef * batch.value_loss  # type: ignore[operator]
        return self._with_aux_losses("value", batch, self._with_aux_losses("policy", batch, loss))

    def _role_loss(self, role: str, batch: PolicyBatch) -> th.Tensor:
        return self.loss_of(batch)  # one optimizer ("policy") for the policy and value terms

    def _before_policy_loss(self, batch: PolicyBatch) -> None:
        """What the policy-loss stage reads besides the evaluation (PPO: the ratio)."""

    @staticmethod
    def _default_advantages(agent: Any, batch: PolicyBatch) -> None:
        raise NotImplementedError

    @staticmethod
    def _default_policy_loss(agent: Any, batch: PolicyBatch) -> None:
        raise NotImplementedError


def default_value_loss(agent: Any, batch: PolicyBatch) -> None:
    """MSE(R, V), with V clipped to V_old ± ε_vf when value clipping is on (PPO)."""
    if batch.clip_range_vf is None:
        values_pred = batch.values
    else:
        values_pred = batch.old_values + th.clamp(
            batch.values - batch.old_values, -batch.clip_range_vf, batch.clip_range_vf
        )
    batch.value_loss = F.mse_loss(batch.returns, values_pred)


def default_entropy_loss(agent: Any, batch: PolicyBatch) -> None:
    """−E[H], or −E[−log π] when the distribution has no closed-form entropy."""
    if batch.entropy is None:
        batch.entropy_loss = -th.mean(-batch.log_prob)
    else:
        batch.entropy_loss = -th.mean(batch.entropy)
