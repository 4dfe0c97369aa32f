"""SurgicalTD3: SB3's TD3 with its train step split into stages that surgeries fill.

The stages are those of :mod:`rlsurgery.agents.actor_critic` (shared with SAC)::

    y = r + (1 − d) γ^k min_i Q'_i(s', a'),   a' = clip(μ'(s') + clip(ε, −c, c), −1, 1),  ε ~ N(0, σ²)
    L_critic = Σ_i MSE(Q_i(s, a), y);   L_actor = −mean Q_1(s, μ(s))   (every ``policy_delay`` steps)

Surgeries also act through configuration (e.g. hindsight replay's buffer), network changes
and env wrappers (intrinsic rewards). With no surgeries it is ``stable_baselines3.TD3``,
bit for bit.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch as th
from stable_baselines3 import TD3
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.td3.policies import TD3Policy

from rlsurgery.agents.actor_critic import ActorCriticSurgicalMixin
from rlsurgery.core.batch import Batch
from rlsurgery.nets.layout import TD3_LAYOUT, NetworkLayout


class SurgicalTD3(ActorCriticSurgicalMixin, TD3):
    """Twin Delayed DDPG with surgeries (SB3's :class:`~stable_baselines3.TD3` subclass).

    Paper: https://arxiv.org/abs/1802.09477. Takes every argument of SB3's ``TD3`` (same
    defaults) plus ``surgeries``.

    :param policy: ``"MlpPolicy"``, ``"CnnPolicy"``, ``"MultiInputPolicy"`` or a ``TD3Policy`` class
    :param env: the environment (or its Gymnasium id)
    :param surgeries: surgery specs: keys, ``"key:p=v,..."`` strings, mappings or surgery objects
    :param learning_rate: learning rate of actor and critics
    :param buffer_size: replay buffer size
    :param learning_starts: random steps before learning
    :param batch_size: minibatch size
    :param tau: Polyak coefficient of the targets
    :param gamma: discount factor
    :param train_freq: update every ``train_freq`` steps (or ``(n, "episode")``)
    :param gradient_steps: gradient steps per update (-1: as many as env steps)
    :param action_noise: exploration noise on the actions
    :param replay_buffer_class: replay buffer class
    :param replay_buffer_kwargs: its keyword arguments
    :param optimize_memory_usage: SB3's memory-efficient replay buffer
    :param n_steps: n-step returns
    :param policy_delay: critic updates per actor (and target) update
    :param target_policy_noise: std of the target policy smoothing noise
    :param target_noise_clip: clip of that noise
    :param stats_window_size: episodes averaged in the rollout logs
    :param tensorboard_log: TensorBoard log folder (None: no logging)
    :param policy_kwargs: keyword arguments of the policy
    :param verbose: 0 silent, 1 info, 2 debug
    :param seed: seed of the random generators
    :param device: ``"auto"``, ``"cpu"`` or ``"cuda"``
    :param _init_setup_model: build the networks now (False when loading)
    """

    algorithm_family: ClassVar[str] = "td3"
    LAYOUT: ClassVar[NetworkLayout] = TD3_LAYOUT

    def __init__(
        self,
        policy: str | type[TD3Policy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
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
        policy_delay: int = 2,
        target_policy_noise: float = 0.2,
        target_noise_clip: float = 0.5,
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
    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        """Run ``gradient_steps`` critic updates (and the delayed actor updates) through the stages."""
        self.policy.set_training_mode(True)
        self._update_learning_rate([self.actor.optimizer, self.critic.optimizer])

        actor_losses, critic_losses = [], []
        for _ in range(gradient_steps):
            self._n_updates += 1
            batch = self.sample_batch(batch_size)
            self._pipeline.run_all("augment", self, batch)
            with th.no_grad():
                self._pipeline.run("target", self._default_target, self, batch)
            critic_loss = self.critic_loss_of(batch)
            critic_losses.append(critic_loss.item())
            self._optimizer_step("critic", self.critic.optimizer, batch, critic_loss)

            if self._n_updates % self.policy_delay == 0:  # delayed policy and target updates
                actor_loss = self.actor_loss_of(batch)
                actor_losses.append(actor_loss.item())
                self._optimizer_step("actor", self.actor.optimizer, batch, actor_loss)
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                polyak_update(self.actor.parameters(), self.actor_target.parameters(), self.tau)
                polyak_update(self.critic_batch_norm_stats, self.critic_batch_norm_stats_target, 1.0)
                polyak_update(self.actor_batch_norm_stats, self.actor_batch_norm_stats_target, 1.0)
            self._pipeline.run_all("after_update", self, batch)

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        if actor_losses:
            self.logger.record("train/actor_loss", np.mean(actor_losses))
        self.logger.record("train/critic_loss", np.mean(critic_losses))
        self._record_aux_losses()

    @staticmethod
    def _default_target(agent: SurgicalTD3, batch: Batch) -> None:
        # a' = clip(μ'(s') + clip(ε, −c, c), −1, 1), ε ~ N(0, σ²);  y = r + (1 − d) γ^k min_i Q'_i(s', a')
        noise = batch.actions.clone().data.normal_(0, agent.target_policy_noise)
        noise = noise.clamp(-agent.target_noise_clip, agent.target_noise_clip)
        next_actions = (agent.actor_target(batch.next_observations) + noise).clamp(-1, 1)
        next_q = th.cat(agent.critic_target(batch.next_observations, next_actions), dim=1)
        next_q, _ = th.min(next_q, dim=1, keepdim=True)
        batch.next_actions = next_actions
        batch.target = batch.rewards + (1 - batch.dones) * batch.discounts * next_q

    @staticmethod
    def _default_actor_loss(agent: SurgicalTD3, batch: Batch) -> None:
        # L = −mean Q_1(s, μ(s))
        batch.actor_loss = -agent.critic.q1_forward(
            batch.observations, agent.actor(batch.observations)
        ).mean()
