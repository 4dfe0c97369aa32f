"""SurgicalDQN: SB3's DQN with its train step split into stages that surgeries fill.

One gradient step runs these stages (exclusive ones take at most one surgery)::

    sample        draw a Batch from the replay buffer (replay surgeries shape what it holds)
    augment       composable: transform the batch's observations
    estimate      online estimate for the taken actions      -> batch.current
    next_action   action a* at s' for bootstrapping          -> batch.next_actions
    target        bootstrapped target                        -> batch.target
    loss          element-wise loss and per-sample TD error  -> batch.elementwise_loss, td_error
    weighting     composable: per-sample loss weights                     -> batch.weights
    (reduce)      mean of batch.weights * elementwise_loss
    aux_loss      composable: extra loss terms for the role "q"
    (step)        backward, clip the gradient norm
    before_step   composable: hooks right before the optimizer step (loss watchers, SAM)
    after_update  composable hooks: priorities, noise reset, per-update target sync

(The no-grad next_action and target stages execute before estimate, as in SB3, so the
online forward pass sits right before its backward pass; the math does not depend on it.)

and per environment step: ``target_sync`` (exclusive), ``on_step`` (composable
schedules); acting goes through ``act`` (exclusive). With no surgeries every default
is SB3's own computation, so the agent reproduces ``stable_baselines3.DQN`` exactly.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import polyak_update
from torch.nn import functional as F

from rlsurgery.agents.dqn_policies import (
    SurgicalCnnPolicy,
    SurgicalDQNPolicy,
    SurgicalMultiInputPolicy,
    SurgicalQNetwork,
)
from rlsurgery.agents.off_policy import OffPolicySurgicalMixin
from rlsurgery.core.batch import Batch
from rlsurgery.core.pipeline import AUX_LOSS, BEFORE_STEP, Stage
from rlsurgery.nets.layout import DQN_LAYOUT, NetworkLayout
from rlsurgery.nets.modules import parameters_of

SelfSurgicalDQN = TypeVar("SelfSurgicalDQN", bound="SurgicalDQN")

DQN_STAGES = (
    Stage("augment", True, "transform the sampled batch's observations before the loss stages"),
    Stage("estimate", False, "online estimate of the taken actions"),
    Stage("next_action", False, "action selection at s' for the bootstrap"),
    Stage("target", False, "bootstrapped TD target"),
    Stage("loss", False, "element-wise loss and per-sample TD error"),
    Stage("weighting", True, "per-sample loss weights before the reduction"),
    AUX_LOSS,
    BEFORE_STEP,
    Stage("after_update", True, "hooks after each optimizer step"),
    Stage("target_sync", False, "how the target network follows the online network"),
    Stage("on_step", True, "hooks after each environment step"),
    Stage("act", False, "action selection while collecting experience"),
)


class SurgicalDQN(OffPolicySurgicalMixin, DQN):
    """Deep Q-Network with surgeries (SB3's :class:`~stable_baselines3.DQN` subclass).

    Paper: https://www.nature.com/articles/nature14236. Takes every argument of SB3's
    ``DQN`` (same defaults) plus ``surgeries``.

    :param policy: ``"MlpPolicy"``, ``"CnnPolicy"``, ``"MultiInputPolicy"`` or a subclass of
        :class:`~rlsurgery.agents.dqn_policies.SurgicalDQNPolicy`
    :param env: the environment (or its Gymnasium id)
    :param surgeries: surgery specs: keys, ``"key:p=v,..."`` strings, mappings or
        :class:`~rlsurgery.core.surgery.Surgery` objects (see ``rlsurgery catalog``)
    :param learning_rate: learning rate, constant or a function of the progress remaining
    :param buffer_size: size of the replay buffer
    :param learning_starts: steps of random experience collected before learning starts
    :param batch_size: minibatch size of each gradient update
    :param tau: soft update coefficient of the target network (1 for a hard copy)
    :param gamma: discount factor
    :param train_freq: update the model every ``train_freq`` steps (or ``(n, "episode")``)
    :param gradient_steps: gradient steps after each rollout (-1: as many as env steps)
    :param replay_buffer_class: replay buffer class (replay surgeries set it)
    :param replay_buffer_kwargs: keyword arguments of the replay buffer
    :param optimize_memory_usage: SB3's memory-efficient replay buffer
    :param n_steps: n-step returns with SB3's ``NStepReplayBuffer`` (or use the
        ``n_step_returns`` surgery, which also composes with prioritized replay)
    :param target_update_interval: env steps between target network updates
    :param exploration_fraction: fraction of training over which ε is annealed
    :param exploration_initial_eps: initial ε
    :param exploration_final_eps: final ε
    :param max_grad_norm: gradient clipping norm
    :param stats_window_size: episodes averaged in the rollout logs
    :param tensorboard_log: TensorBoard log folder (None: no logging)
    :param policy_kwargs: keyword arguments of the policy (``net_arch`` …)
    :param verbose: 0 silent, 1 info, 2 debug
    :param seed: seed of the random generators
    :param device: ``"auto"``, ``"cpu"`` or ``"cuda"``
    :param _init_setup_model: build the networks now (False when loading)

    >>> from rlsurgery import SurgicalDQN
    >>> model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, learning_starts=50,
    ...                     surgeries=["double_q_learning", "dueling_architecture"])
    >>> [record["key"] for record in model.surgery_log]
    ['double_q_learning', 'dueling_architecture']
    >>> model = model.learn(100)
    """

    algorithm_family: ClassVar[str] = "dqn"
    LAYOUT: ClassVar[NetworkLayout] = DQN_LAYOUT
    STAGES: ClassVar[tuple[Stage, ...]] = DQN_STAGES
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": SurgicalDQNPolicy,
        "CnnPolicy": SurgicalCnnPolicy,
        "MultiInputPolicy": SurgicalMultiInputPolicy,
    }
    q_net: SurgicalQNetwork
    q_net_target: SurgicalQNetwork

    def __init__(
        self,
        policy: str | type[SurgicalDQNPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 100,
        batch_size: int = 32,
        tau: float = 1.0,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 4,
        gradient_steps: int = 1,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 1,
        target_update_interval: int = 10000,
        exploration_fraction: float = 0.1,
        exploration_initial_eps: float = 1.0,
        exploration_final_eps: float = 0.05,
        max_grad_norm: float = 10,
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

    def _on_step(self) -> None:
        self._n_calls += 1
        self._pipeline.run("target_sync", self._default_target_sync, self)
        self.exploration_rate = self.exploration_schedule(self._current_progress_remaining)
        self.logger.record("rollout/exploration_rate", self.exploration_rate)
        self._pipeline.run_all("on_step", self)

    def _default_target_sync(self, _agent: SurgicalDQN) -> None:
        # SB3: copy (tau=1) or Polyak-average every target_update_interval env steps
        if self._n_calls % max(self.target_update_interval // self.n_envs, 1) == 0:
            polyak_update(self.q_net.parameters(), self.q_net_target.parameters(), self.tau)
            polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)

    # ------------------------------------------------------------------ training
    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        """Run ``gradient_steps`` updates through the stage pipeline."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        losses = []
        for _ in range(gradient_steps):
            batch = self.sample_batch(batch_size)
            loss = self.compute_loss(batch)
            losses.append(loss.item())
            self._optimizer_step(
                "policy",
                self.policy.optimizer,
                batch,
                loss,
                clip=(parameters_of(self.policy), self.max_grad_norm),
            )
            self._n_updates += 1
            self._pipeline.run_all("after_update", self, batch)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", np.mean(losses))
        self._record_aux_losses()

    def compute_loss(self, batch: Batch) -> th.Tensor:
        """The augment stage, then :meth:`loss_of` on ``batch``: the reduced loss of one update.

        The stages fill ``batch`` in place (``current``, ``next_actions``, ``target``,
        ``elementwise_loss``, ``td_error``), so tests and diagnostics can read every step.
        """
        self._pipeline.run_all("augment", self, batch)
        return self.loss_of(batch)

    def loss_of(self, batch: Batch) -> th.Tensor:
        """Run the next-action, target, estimate, loss, weighting and ``aux_loss`` (role ``"q"``)
        stages on an augmented ``batch``; return the reduced loss."""
        run = self._pipeline.run
        # the no-grad target stages run first (as SB3 does): the online forward pass then sits
        # right before its backward pass, which keeps its activations and weights in cache
        run("next_action", self._default_next_action, self, batch)
        run("target", self._default_target, self, batch)
        run("estimate", self._default_estimate, self, batch)
        run("loss", self._default_loss, self, batch)
        self._pipeline.run_all("weighting", self, batch)
        return self._with_aux_losses("q", batch, self.reduce_loss(batch))

    def _role_loss(self, role: str, batch: Batch) -> th.Tensor:
        return self.loss_of(batch)  # one optimizer ("policy"), one loss

    @staticmethod
    def reduce_loss(batch: Batch) -> th.Tensor:
        """Weighting and reduction: mean of ``weights * elementwise_loss`` (plain mean without weights)."""
        assert batch.elementwise_loss is not None, "the loss stage must fill batch.elementwise_loss"
        if batch.weights is None:
            return batch.elementwise_loss.mean()
        return (batch.weights * batch.elementwise_loss).mean()

    @staticmethod
    def _default_estimate(agent: SurgicalDQN, batch: Batch) -> None:
        q_values = agent.q_net(batch.observations)
        batch.current = th.gather(q_values, dim=1, index=batch.actions.long())

    @staticmethod
    def _default_next_action(agent: SurgicalDQN, batch: Batch) -> None:
        # a* = argmax_a Q_target(s', a)  (plain DQN: max over the target network)
        with th.no_grad():
            outputs = agent.q_net_target.outputs(batch.next_observations)
            batch.next_target_outputs = outputs
            batch.next_actions = agent.q_net_target.q_values(outputs).argmax(dim=1, keepdim=True)

    @staticmethod
    def _default_target(agent: SurgicalDQN, batch: Batch) -> None:
        # y = r + (1 - d) γ^n Q_target(s', a*)
        with th.no_grad():
            outputs = batch.next_target_outputs
            if outputs is None:
                outputs = agent.q_net_target.outputs(batch.next_observations)
            next_q = th.gather(agent.q_net_target.q_values(outputs), dim=1, index=batch.next_actions)
            batch.target = batch.rewards + (1 - batch.dones) * batch.discounts * next_q

    @staticmethod
    def _default_loss(agent: SurgicalDQN, batch: Batch) -> None:
        # Huber loss per sample; |y - Q| is the TD error
        batch.elementwise_loss = F.smooth_l1_loss(batch.current, batch.target, reduction="none").squeeze(-1)
        with th.no_grad():
            batch.td_error = (batch.target - batch.current).abs_().squeeze(-1)

    def learn(
        self: SelfSurgicalDQN,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "DQN",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfSurgicalDQN:
        """Train for ``total_timesteps`` environment steps (see SB3's ``DQN.learn``)."""
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
