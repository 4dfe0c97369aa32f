"""SurgicalSAC: SB3's SAC with its train step split into stages that surgeries fill.

The stages are those of :mod:`rlsurgery.agents.actor_critic` (shared with TD3). Before the
critics' update the actor samples a ~ π(·|s) and the entropy coefficient α takes its own step
(SB3's, not a surgery role); the target and the actor loss use α::

    y = r + (1 − d) γ^k (min_i Q'_i(s', a') − α log π(a'|s')),   a' ~ π(·|s')
    L_actor = mean(α log π(a|s) − min_i Q_i(s, a)),              a ~ π(·|s)

Surgeries also act through hyper-parameters (``configure``: e.g. the entropy coefficient or
target entropy of ``entropy_regularization``), network changes and env wrappers (intrinsic
rewards). With no surgeries it is ``stable_baselines3.SAC``, bit for bit.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.sac.policies import SACPolicy

from rlsurgery.agents.actor_critic import ActorCriticSurgicalMixin
from rlsurgery.core.batch import Batch
from rlsurgery.nets.layout import SAC_LAYOUT, NetworkLayout


class SurgicalSAC(ActorCriticSurgicalMixin, SAC):
    """Soft Actor-Critic with surgeries (SB3's :class:`~stable_baselines3.SAC` subclass).

    Paper: https://arxiv.org/abs/1801.01290. Takes every argument of SB3's ``SAC`` (same
    defaults) plus ``surgeries``.

    :param policy: ``"MlpPolicy"``, ``"CnnPolicy"``, ``"MultiInputPolicy"`` or a ``SACPolicy`` class
    :param env: the environment (or its Gymnasium id)
    :param surgeries: surgery specs: keys, ``"key:p=v,..."`` strings, mappings or surgery objects
    :param learning_rate: learning rate of every optimizer (constant or a schedule)
    :param buffer_size: replay buffer size
    :param learning_starts: random steps before learning
    :param batch_size: minibatch size
    :param tau: Polyak coefficient of the target critics
    :param gamma: discount factor
    :param train_freq: update every ``train_freq`` steps (or ``(n, "episode")``)
    :param gradient_steps: gradient steps per update (-1: as many as env steps)
    :param action_noise: action noise (not needed for SAC in general)
    :param replay_buffer_class: replay buffer class
    :param replay_buffer_kwargs: its keyword arguments
    :param optimize_memory_usage: SB3's memory-efficient replay buffer
    :param n_steps: n-step returns
    :param ent_coef: entropy coefficient α: a float, or ``"auto"`` / ``"auto_0.1"`` to learn it
    :param target_update_interval: gradient steps between target updates
    :param target_entropy: target entropy when α is learnt (``"auto"``: −dim(A))
    :param use_sde: generalized state-dependent exploration
    :param sde_sample_freq: gSDE noise resampling frequency
    :param use_sde_at_warmup: gSDE instead of uniform sampling during warm-up
    :param stats_window_size: episodes averaged in the rollout logs
    :param tensorboard_log: TensorBoard log folder (None: no logging)
    :param policy_kwargs: keyword arguments of the policy
    :param verbose: 0 silent, 1 info, 2 debug
    :param seed: seed of the random generators
    :param device: ``"auto"``, ``"cpu"`` or ``"cuda"``
    :param _init_setup_model: build the networks now (False when loading)
    """

    algorithm_family: ClassVar[str] = "sac"
    LAYOUT: ClassVar[NetworkLayout] = SAC_LAYOUT
    critic_loss_scale: ClassVar[float] = 0.5

    def __init__(
        self,
        policy: str | type[SACPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 100,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        action_noise: ActionNoise | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 1,
        ent_coef: str | float = "auto",
        target_update_interval: int = 1,
        target_entropy: str | float = "auto",
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        use_sde_at_warmup: bool = False,
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
    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """Run ``gradient_steps`` updates of α, the critics and the actor through the stages."""
        self.policy.set_training_mode(True)
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers += [self.ent_coef_optimizer]
        self._update_learning_rate(optimizers)

        ent_coef_losses: list[float] = []
        ent_coefs, actor_losses, critic_losses = [], [], []
        for gradient_step in range(gradient_steps):
            batch = self.sample_batch(batch_size)
            self._pipeline.run_all("augment", self, batch)
            if self.use_sde:  # log_std may have changed since the last gradient step
                self.actor.reset_noise()
            self._sample_policy_actions(batch)
            batch.entropy_coef = self._step_entropy_coefficient(batch, ent_coef_losses)
            ent_coefs.append(batch.entropy_coef.item())

            with th.no_grad():
                self._pipeline.run("target", self._default_target, self, batch)
            critic_loss = self.critic_loss_of(batch)
            critic_losses.append(critic_loss.item())
            self._optimizer_step("critic", self.critic.optimizer, batch, critic_loss)

            actor_loss = self.actor_loss_of(batch)
            actor_losses.append(actor_loss.item())
            self._optimizer_step("actor", self.actor.optimizer, batch, actor_loss)

            if gradient_step % self.target_update_interval == 0:
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)
            self._pipeline.run_all("after_update", self, batch)

        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/ent_coef", np.mean(ent_coefs))
        self.logger.record("train/actor_loss", np.mean(actor_losses))
        self.logger.record("train/critic_loss", np.mean(critic_losses))
        if ent_coef_losses:
            self.logger.record("train/ent_coef_loss", np.mean(ent_coef_losses))
        self._record_aux_losses()

    def _entropy_coefficient_now(self) -> th.Tensor:
        if self.ent_coef_optimizer is None or self.log_ent_coef is None:
            return self.ent_coef_tensor
        return th.exp(self.log_ent_coef.detach())

    def _sample_policy_actions(self, batch: Batch) -> None:
        actions, log_prob = self.actor.action_log_prob(batch.observations)
        batch.policy_actions, batch.log_prob = actions, log_prob.reshape(-1, 1)

    def _step_entropy_coefficient(self, batch: Batch, losses: list[float]) -> th.Tensor:
        """α for this update; when α is learnt, its step on −log α · (log π + H̄) (SB3's)."""
        ent_coef = self._entropy_coefficient_now()  # read before its step, detached from every loss
        if self.ent_coef_optimizer is None or self.log_ent_coef is None:
            return ent_coef
        assert isinstance(self.target_entropy, float)
        loss = -(self.log_ent_coef * (batch.log_prob + self.target_entropy).detach()).mean()  # type: ignore[operator]
        losses.append(loss.item())
        self.ent_coef_optimizer.zero_grad()
        loss.backward()
        self.ent_coef_optimizer.step()
        return ent_coef

    @staticmethod
    def _default_target(agent: SurgicalSAC, batch: Batch) -> None:
        # y = r + (1 − d) γ^k (min_i Q'_i(s', a') − α log π(a'|s')),  a' ~ π(·|s')
        next_actions, next_log_prob = agent.actor.action_log_prob(batch.next_observations)
        next_q = th.cat(agent.critic_target(batch.next_observations, next_actions), dim=1)
        next_q, _ = th.min(next_q, dim=1, keepdim=True)
        next_q = next_q - batch.entropy_coef * next_log_prob.reshape(-1, 1)
        batch.next_actions = next_actions
        batch.target = batch.rewards + (1 - batch.dones) * batch.discounts * next_q

    @staticmethod
    def _default_actor_loss(agent: SurgicalSAC, batch: Batch) -> None:
        # L = mean(α log π(a|s) − min_i Q_i(s, a)),  a ~ π(·|s) drawn before the critics' step
        q_pi = th.cat(agent.critic(batch.observations, batch.policy_actions), dim=1)
        min_q_pi, _ = th.min(q_pi, dim=1, keepdim=True)
        batch.actor_loss = (batch.entropy_coef * batch.log_prob - min_q_pi).mean()
