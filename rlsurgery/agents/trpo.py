"""SurgicalTRPO: sb3-contrib's TRPO with its value-function step split into stages.

The policy step is TRPO's own (Schulman et al. 2015): the surrogate g = ∇ E[A r], the
natural direction x = F⁻¹g by conjugate gradient on the Fisher-vector product of the KL, the
largest step √(2δ / xᵀFx), then a backtracking line search until the KL is below δ
(``target_kl``) and the surrogate improves. It moves the actor without an optimizer, so
optimizer-step surgeries (learning rates, clipping, SAM, loss watchers) reach TRPO's critic
only. The value step, ``n_critic_updates`` passes of minibatches, runs::

    augment       composable: transform the minibatch's observations
    (evaluate)    V(s)                                                       -> batch.values
    value_loss    MSE(R, V)                                                  -> batch.value_loss
    aux_loss      composable: extra terms of the role "value"
    (step)        backward; the actor's gradients dropped (they would break the KL bound)
    before_step   composable: hooks before the optimizer step
    after_update  composable hooks after each step

plus the collection hooks, ``act``, configuration (``trust_region`` sets δ), network changes
and env wrappers. With no surgeries it is ``sb3_contrib.TRPO``, bit for bit.
"""

from __future__ import annotations

import copy
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib import TRPO
from sb3_contrib.common.utils import conjugate_gradient_solver
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.distributions import kl_divergence
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, RolloutBufferSamples, Schedule
from stable_baselines3.common.utils import explained_variance

from rlsurgery.agents.on_policy import ON_POLICY_STAGES, OnPolicySurgicalMixin, default_value_loss
from rlsurgery.core.batch import PolicyBatch
from rlsurgery.core.pipeline import AUX_LOSS, BEFORE_STEP, Stage
from rlsurgery.nets.layout import ACTOR_CRITIC_LAYOUT, NetworkLayout

TRPO_STAGES = (
    *ON_POLICY_STAGES,
    Stage("augment", True, "transform the observations of the critic step's minibatches"),
    Stage("value_loss", False, "value-function loss of the critic step"),
    AUX_LOSS,
    BEFORE_STEP,
    Stage("after_update", True, "hooks after each critic step"),
)


class SurgicalTRPO(OnPolicySurgicalMixin, TRPO):
    """Trust Region Policy Optimization with surgeries (sb3-contrib's ``TRPO`` subclass).

    Paper: https://arxiv.org/abs/1502.05477. Takes every argument of sb3-contrib's ``TRPO``
    (same defaults) plus ``surgeries``.

    :param policy: ``"MlpPolicy"``, ``"CnnPolicy"``, ``"MultiInputPolicy"`` or an ``ActorCriticPolicy`` class
    :param env: the environment (or its Gymnasium id)
    :param surgeries: surgery specs: keys, ``"key:p=v,..."`` strings, mappings or surgery objects
    :param learning_rate: learning rate of the value function optimizer
    :param n_steps: steps per environment per update
    :param batch_size: minibatch size of the critic updates
    :param gamma: discount factor
    :param cg_max_steps: conjugate gradient iterations
    :param cg_damping: damping of the Hessian-vector product
    :param line_search_shrinking_factor: step shrink per line-search iteration
    :param line_search_max_iter: line-search iterations
    :param n_critic_updates: critic updates per policy update
    :param gae_lambda: GAE λ
    :param use_sde: generalized state-dependent exploration
    :param sde_sample_freq: gSDE noise resampling frequency
    :param rollout_buffer_class: rollout buffer class
    :param rollout_buffer_kwargs: its keyword arguments
    :param normalize_advantage: normalise the advantages
    :param target_kl: δ, the maximum KL(π_new ‖ π_old) of an update
    :param sub_sampling_factor: sub-sample the batch for the policy update
    :param stats_window_size: episodes averaged in the rollout logs
    :param tensorboard_log: TensorBoard log folder (None: no logging)
    :param policy_kwargs: keyword arguments of the policy
    :param verbose: 0 silent, 1 info, 2 debug
    :param seed: seed of the random generators
    :param device: ``"auto"``, ``"cpu"`` or ``"cuda"``
    :param _init_setup_model: build the networks now (False when loading)
    """

    algorithm_family: ClassVar[str] = "trpo"
    LAYOUT: ClassVar[NetworkLayout] = ACTOR_CRITIC_LAYOUT
    STAGES: ClassVar[tuple[Stage, ...]] = TRPO_STAGES

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
        n_steps: int = 2048,
        batch_size: int = 128,
        gamma: float = 0.99,
        cg_max_steps: int = 15,
        cg_damping: float = 0.1,
        line_search_shrinking_factor: float = 0.8,
        line_search_max_iter: int = 10,
        n_critic_updates: int = 10,
        gae_lambda: float = 0.95,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        normalize_advantage: bool = True,
        target_kl: float = 0.01,
        sub_sampling_factor: int = 1,
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
        """TRPO's policy step on the whole rollout, then the value steps through the stages."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        objectives, kl_divergences, line_search_results, value_losses = [], [], [], []

        for rollout_data in self.rollout_buffer.get(batch_size=None):  # one batch: the whole rollout
            actor_params, objective, kl, success = self._policy_step(rollout_data)
            objectives.append(objective)
            kl_divergences.append(kl)
            line_search_results.append(success)

        for _ in range(self.n_critic_updates):
            for rollout_data in self.rollout_buffer.get(self.batch_size):
                batch = PolicyBatch.from_rollout(rollout_data)
                self._pipeline.run_all("augment", self, batch)
                value_loss = self.value_loss_of(batch)
                value_losses.append(value_loss.item())
                # the value step leaves the parameters it shares with the actor alone (KL bound)
                self._optimizer_step("policy", self.policy.optimizer, batch, value_loss, no_grad=actor_params)
                self._pipeline.run_all("after_update", self, batch)

        self._n_updates += 1
        explained_var = explained_variance(
            self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten()
        )
        self.logger.record("train/policy_objective", np.mean(objectives))
        self.logger.record("train/value_loss", np.mean(value_losses))
        self.logger.record("train/kl_divergence_loss", np.mean(kl_divergences))
        self.logger.record("train/explained_variance", explained_var)
        self.logger.record("train/is_line_search_success", np.mean(line_search_results))
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self._record_aux_losses()

    def value_loss_of(self, batch: PolicyBatch) -> th.Tensor:
        """V(s), the value-loss stage and the ``aux_loss`` terms of the role ``"value"``."""
        batch.values = self.policy.predict_values(batch.observations).flatten()
        self._pipeline.run("value_loss", default_value_loss, self, batch)
        return self._with_aux_losses("value", batch, batch.value_loss)  # type: ignore[arg-type]

    def clip_norm(self, role: str) -> float | None:
        return None  # SB3 does not clip these updates

    def _role_loss(self, role: str, batch: PolicyBatch) -> th.Tensor:
        return self.value_loss_of(batch)  # the optimizer ("policy") only moves the value function

    def _policy_step(self, data: RolloutBufferSamples) -> tuple[list[th.nn.Parameter], float, float, bool]:
        """Natural-gradient step of the actor under the KL bound δ, by conjugate gradient and line search.

        :return: the actor's parameters, the surrogate after the step, the KL reached (0 when the
            line search failed and the step was undone) and whether the line search succeeded
        """
        k = self.sub_sampling_factor
        if k > 1:  # the policy step may look at every k-th sample only
            data = RolloutBufferSamples(
                data.observations[::k],
                data.actions[::k],
                None,
                data.old_log_prob[::k],
                data.advantages[::k],
                None,
            )  # type: ignore[arg-type]
        actions = data.actions
        if isinstance(self.action_space, spaces.Discrete):
            actions = data.actions.long().flatten()

        with th.no_grad():  # π_old, frozen (a shallow copy keeps gSDE's distribution usable)
            old_distribution = copy.copy(self.policy.get_distribution(data.observations))
        distribution = self.policy.get_distribution(data.observations)
        log_prob = distribution.log_prob(actions)
        advantages = data.advantages
        if self.normalize_advantage:
            advantages = (advantages - advantages.mean()) / (data.advantages.std() + 1e-8)
        # surrogate E[A · π/π_old] and the mean KL(π_old ‖ π), both differentiated at θ_old
        objective = (advantages * th.exp(log_prob - data.old_log_prob)).mean()
        kl = kl_divergence(distribution, old_distribution).mean()
        self.policy.optimizer.zero_grad()
        actor_params, objective_grad, grad_kl, shapes = self._compute_actor_grad(kl, objective)

        fisher_product = partial(self.hessian_vector_product, actor_params, grad_kl)
        direction = conjugate_gradient_solver(fisher_product, objective_grad, max_iter=self.cg_max_steps)
        # the step s·x with ½ (s x)ᵀ F (s x) = δ:  s = √(2δ / xᵀFx)
        max_step = 2 * self.target_kl
        max_step /= float(th.matmul(direction, fisher_product(direction, retain_graph=False)))
        max_step = np.sqrt(max_step)

        originals = [param.detach().clone() for param in actor_params]
        backtrack = 1.0
        with th.no_grad():
            for _ in range(self.line_search_max_iter):
                start = 0
                for param, original, shape in zip(actor_params, originals, shapes, strict=True):
                    n = param.numel()
                    param.data = original.data + backtrack * max_step * direction[start : start + n].view(
                        shape
                    )
                    start += n
                distribution = self.policy.get_distribution(data.observations)
                log_prob = distribution.log_prob(actions)
                new_objective = (advantages * th.exp(log_prob - data.old_log_prob)).mean()
                kl = kl_divergence(distribution, old_distribution).mean()
                if kl < self.target_kl and new_objective > objective:
                    return actor_params, new_objective.item(), kl.item(), True
                backtrack *= self.line_search_shrinking_factor
            for param, original in zip(actor_params, originals, strict=True):  # no step found: undo
                param.data = original.data.clone()
        return actor_params, objective.item(), 0.0, False
