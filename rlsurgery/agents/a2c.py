"""SurgicalA2C: SB3's A2C with its update split into the stages it shares with PPO.

One gradient step per rollout, on the whole rollout, through the loss stages of
:mod:`rlsurgery.agents.on_policy` (augment, advantages, policy_loss, value_loss,
entropy_loss, aux_loss, before_step, after_update), with A2C's own defaults::

    advantages    (A − mean A) / (std A + 1e-8) when ``normalize_advantage`` (off by default)
    policy_loss   −E[A log π(a|s)]

plus the collection hooks (``on_rollout_start`` / ``on_rollout_end``) and ``act``. With no
surgeries it is ``stable_baselines3.A2C``, bit for bit.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch as th
from stable_baselines3 import A2C
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from stable_baselines3.common.utils import explained_variance

from rlsurgery.agents.on_policy import ON_POLICY_STAGES, POLICY_LOSS_STAGES, PolicyLossMixin
from rlsurgery.core.batch import PolicyBatch
from rlsurgery.core.pipeline import Stage
from rlsurgery.nets.layout import ACTOR_CRITIC_LAYOUT, NetworkLayout
from rlsurgery.nets.modules import parameters_of


class SurgicalA2C(PolicyLossMixin, A2C):
    """Advantage Actor-Critic with surgeries (SB3's :class:`~stable_baselines3.A2C` subclass).

    Paper: https://arxiv.org/abs/1602.01783. Takes every argument of SB3's ``A2C`` (same
    defaults) plus ``surgeries`` (see :class:`~rlsurgery.agents.ppo.SurgicalPPO` for the
    shared ones).

    :param policy: ``"MlpPolicy"``, ``"CnnPolicy"``, ``"MultiInputPolicy"`` or an ``ActorCriticPolicy`` class
    :param env: the environment (or its Gymnasium id)
    :param surgeries: surgery specs: keys, ``"key:p=v,..."`` strings, mappings or surgery objects
    :param learning_rate: learning rate, constant or a function of the progress remaining
    :param n_steps: steps per environment per update
    :param gamma: discount factor
    :param gae_lambda: GAE λ (1: classic advantage)
    :param ent_coef: entropy coefficient
    :param vf_coef: value loss coefficient
    :param max_grad_norm: gradient clipping norm
    :param rms_prop_eps: RMSProp ε
    :param use_rms_prop: RMSProp (True) or Adam
    :param use_sde: generalized state-dependent exploration
    :param sde_sample_freq: gSDE noise resampling frequency
    :param rollout_buffer_class: rollout buffer class
    :param rollout_buffer_kwargs: its keyword arguments
    :param normalize_advantage: normalise the advantages
    :param stats_window_size: episodes averaged in the rollout logs
    :param tensorboard_log: TensorBoard log folder (None: no logging)
    :param policy_kwargs: keyword arguments of the policy
    :param verbose: 0 silent, 1 info, 2 debug
    :param seed: seed of the random generators
    :param device: ``"auto"``, ``"cpu"`` or ``"cuda"``
    :param _init_setup_model: build the networks now (False when loading)
    """

    algorithm_family: ClassVar[str] = "a2c"
    LAYOUT: ClassVar[NetworkLayout] = ACTOR_CRITIC_LAYOUT
    STAGES: ClassVar[tuple[Stage, ...]] = (*ON_POLICY_STAGES, *POLICY_LOSS_STAGES)

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 7e-4,
        n_steps: int = 5,
        gamma: float = 0.99,
        gae_lambda: float = 1.0,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        rms_prop_eps: float = 1e-5,
        use_rms_prop: bool = True,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        normalize_advantage: bool = False,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        surgeries: Any = None,
        _init_setup_model: bool = True,
    ) -> None:
        self._construct(locals())

    # ------------------------------------------------------------------ training
    def train(self) -> None:
        """One gradient step on the whole rollout through the loss stages."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        for rollout_data in self.rollout_buffer.get(batch_size=None):  # one batch: the whole rollout
            batch = PolicyBatch.from_rollout(rollout_data)
            loss = self.compute_loss(batch)
            clip = (parameters_of(self.policy), self.max_grad_norm)
            self._optimizer_step("policy", self.policy.optimizer, batch, loss, clip=clip)
            self._pipeline.run_all("after_update", self, batch)

        explained_var = explained_variance(
            self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten()
        )
        self._n_updates += 1
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/explained_variance", explained_var)
        self.logger.record("train/entropy_loss", batch.entropy_loss.item())  # type: ignore[union-attr]
        self.logger.record("train/policy_loss", batch.policy_loss.item())  # type: ignore[union-attr]
        self.logger.record("train/value_loss", batch.value_loss.item())  # type: ignore[union-attr]
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self._record_aux_losses()

    @staticmethod
    def _default_advantages(agent: SurgicalA2C, batch: PolicyBatch) -> None:
        # A ← (A − mean A) / (std A + 1e-8) over the rollout, when normalize_advantage is set
        if agent.normalize_advantage:
            advantages = batch.advantages
            batch.advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

    @staticmethod
    def _default_policy_loss(agent: SurgicalA2C, batch: PolicyBatch) -> None:
        # L = −E[A log π(a|s)]
        batch.policy_loss = -(batch.advantages * batch.log_prob).mean()  # type: ignore[operator]
