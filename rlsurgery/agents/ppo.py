"""SurgicalPPO: SB3's PPO with its update split into stages that surgeries fill.

Each minibatch update runs (see :mod:`rlsurgery.agents.on_policy` for the stages it shares with A2C)::

    augment        composable: transform the minibatch's observations
    evaluate       V(s), log π(a|s), H under the current parameters     (the policy)
    advantages     normalise the advantages                             -> batch.advantages
    ratio          r = exp(log π − log π_old)                           -> batch.ratio
    policy_loss    clipped surrogate −E[min(rA, clip(r, 1±ε)A)]          -> batch.policy_loss
    value_loss     (clipped) MSE to the returns                         -> batch.value_loss
    entropy_loss   −E[H]                                                -> batch.entropy_loss
    (total)        policy_loss + ent_coef·entropy_loss + vf_coef·value_loss
    aux_loss       composable: extra terms for the roles "policy" and "value", added to the total
    kl_stop        whether to stop the epoch loop (default: SB3's 1.5 × target_kl rule)
    before_step    composable: hooks after backward and clipping, before the optimizer step
    after_update   composable hooks after each optimizer step

and around collection (:mod:`rlsurgery.agents.on_policy`): ``on_rollout_start`` /
``on_rollout_end`` (composable) and ``act`` (exclusive: how ``predict`` chooses actions).
With no surgeries every default is SB3's own
computation, in SB3's order, so the agent reproduces ``stable_baselines3.PPO`` exactly.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import explained_variance

from rlsurgery.agents.on_policy import ON_POLICY_STAGES, POLICY_LOSS_STAGES, PolicyLossMixin
from rlsurgery.core.batch import PolicyBatch
from rlsurgery.core.pipeline import Stage
from rlsurgery.nets.layout import ACTOR_CRITIC_LAYOUT, NetworkLayout
from rlsurgery.nets.modules import parameters_of

SelfSurgicalPPO = TypeVar("SelfSurgicalPPO", bound="SurgicalPPO")

PPO_STAGES = (
    *ON_POLICY_STAGES,
    *POLICY_LOSS_STAGES,
    Stage("kl_stop", False, "early stop of the epoch loop"),
)


class SurgicalPPO(PolicyLossMixin, PPO):
    """Proximal Policy Optimization with surgeries (SB3's :class:`~stable_baselines3.PPO` subclass).

    Paper: https://arxiv.org/abs/1707.06347. Takes every argument of SB3's ``PPO`` (same
    defaults) plus ``surgeries``.

    :param policy: ``"MlpPolicy"``, ``"CnnPolicy"``, ``"MultiInputPolicy"`` or an ``ActorCriticPolicy`` class
    :param env: the environment (or its Gymnasium id)
    :param surgeries: surgery specs: keys, ``"key:p=v,..."`` strings, mappings or surgery objects
    :param learning_rate: learning rate, constant or a function of the progress remaining
    :param n_steps: steps per environment per rollout
    :param batch_size: minibatch size
    :param n_epochs: passes over each rollout
    :param gamma: discount factor
    :param gae_lambda: GAE λ
    :param clip_range: ε of the clipped surrogate (or a schedule)
    :param clip_range_vf: value clipping range (None: off)
    :param normalize_advantage: normalise advantages per minibatch
    :param ent_coef: entropy coefficient
    :param vf_coef: value loss coefficient
    :param max_grad_norm: gradient clipping norm
    :param use_sde: generalized state-dependent exploration (continuous actions)
    :param sde_sample_freq: gSDE noise resampling frequency
    :param rollout_buffer_class: rollout buffer class
    :param rollout_buffer_kwargs: its keyword arguments
    :param target_kl: KL limit for early stopping (None: off)
    :param stats_window_size: episodes averaged in the rollout logs
    :param tensorboard_log: TensorBoard log folder (None: no logging)
    :param policy_kwargs: keyword arguments of the policy (``net_arch`` …)
    :param verbose: 0 silent, 1 info, 2 debug
    :param seed: seed of the random generators
    :param device: ``"auto"``, ``"cpu"`` or ``"cuda"``
    :param _init_setup_model: build the networks now (False when loading)

    >>> from rlsurgery import SurgicalPPO
    >>> model = SurgicalPPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, seed=0,
    ...                     surgeries=["boltzmann_exploration:schedule=constant,initial=2.0"])
    >>> model = model.learn(64)
    """

    algorithm_family: ClassVar[str] = "ppo"
    LAYOUT: ClassVar[NetworkLayout] = ACTOR_CRITIC_LAYOUT
    STAGES: ClassVar[tuple[Stage, ...]] = PPO_STAGES

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        n_steps: int = 2048,
        batch_size: int = 64,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float | Schedule = 0.2,
        clip_range_vf: float | Schedule | None = None,
        normalize_advantage: bool = True,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        target_kl: float | None = None,
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
        """Update the policy on the collected rollout, minibatch by minibatch, through the stages."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range, clip_range_vf = self._clip_ranges()

        entropy_losses, pg_losses, value_losses, clip_fractions = [], [], [], []
        continue_training = True
        for epoch in range(self.n_epochs):
            approx_kl_divs = []
            for rollout_data in self.rollout_buffer.get(self.batch_size):
                batch = PolicyBatch.from_rollout(rollout_data, clip_range, clip_range_vf)
                loss = self.compute_loss(batch)
                pg_losses.append(batch.policy_loss.item())  # type: ignore[union-attr]
                clip_fractions.append(th.mean((th.abs(batch.ratio - 1) > batch.clip_range).float()).item())  # type: ignore[operator]
                value_losses.append(batch.value_loss.item())  # type: ignore[union-attr]
                entropy_losses.append(batch.entropy_loss.item())  # type: ignore[union-attr]

                # KL(π_old ‖ π) ≈ E[(r − 1) − log r]  (Schulman's estimator, as SB3)
                with th.no_grad():
                    log_ratio = batch.log_prob - batch.old_log_prob  # type: ignore[operator]
                    approx_kl_div = th.mean((th.exp(log_ratio) - 1) - log_ratio).cpu().numpy()
                    approx_kl_divs.append(approx_kl_div)
                batch.approx_kl = approx_kl_div
                if self._pipeline.run("kl_stop", self._default_kl_stop, self, batch):
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at step {epoch} due to reaching max kl: {approx_kl_div:.2f}")
                    break

                self._optimizer_step(
                    "policy",
                    self.policy.optimizer,
                    batch,
                    loss,
                    clip=(parameters_of(self.policy), self.max_grad_norm),
                )
                self._pipeline.run_all("after_update", self, batch)

            self._n_updates += 1
            if not continue_training:
                break

        explained_var = explained_variance(
            self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten()
        )
        self.logger.record("train/entropy_loss", np.mean(entropy_losses))
        self.logger.record("train/policy_gradient_loss", np.mean(pg_losses))
        self.logger.record("train/value_loss", np.mean(value_losses))
        self.logger.record("train/approx_kl", np.mean(approx_kl_divs))
        self.logger.record("train/clip_fraction", np.mean(clip_fractions))
        self.logger.record("train/loss", loss.item())
        self.logger.record("train/explained_variance", explained_var)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", batch.clip_range)  # a surgery may schedule it
        if batch.clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", batch.clip_range_vf)
        self._record_aux_losses()

    def _clip_ranges(self) -> tuple[float, float | None]:
        progress = self._current_progress_remaining
        clip_range_vf = None if self.clip_range_vf is None else self.clip_range_vf(progress)  # type: ignore[operator]
        return self.clip_range(progress), clip_range_vf  # type: ignore[operator]

    def _before_policy_loss(self, batch: PolicyBatch) -> None:
        batch.ratio = th.exp(batch.log_prob - batch.old_log_prob)  # type: ignore[operator]

    @staticmethod
    def _default_advantages(agent: SurgicalPPO, batch: PolicyBatch) -> None:
        # A ← (A − mean A) / (std A + 1e-8) per minibatch (not for a single sample)
        advantages = batch.advantages
        if agent.normalize_advantage and len(advantages) > 1:
            batch.advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

    @staticmethod
    def _default_policy_loss(agent: SurgicalPPO, batch: PolicyBatch) -> None:
        # L = −E[min(r A, clip(r, 1 − ε, 1 + ε) A)]
        ratio, advantages, eps = batch.ratio, batch.advantages, batch.clip_range
        policy_loss_1 = advantages * ratio
        policy_loss_2 = advantages * th.clamp(ratio, 1 - eps, 1 + eps)
        batch.policy_loss = -th.min(policy_loss_1, policy_loss_2).mean()

    @staticmethod
    def _default_kl_stop(agent: SurgicalPPO, batch: PolicyBatch) -> bool:
        return agent.target_kl is not None and batch.approx_kl > 1.5 * agent.target_kl

    def learn(
        self: SelfSurgicalPPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "PPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfSurgicalPPO:
        """Train for ``total_timesteps`` environment steps (see SB3's ``PPO.learn``)."""
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
