"""SurgicalTRPO: sb3-contrib's TRPO with the on-policy surgery hooks.

TRPO's update (conjugate gradient, line search under max KL ``target_kl``) is
sb3-contrib's own; surgeries act through configuration (``trust_region`` sets δ), the
collection hooks, ``act``, network changes and env wrappers. With no surgeries it is
``sb3_contrib.TRPO``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch as th
from sb3_contrib import TRPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule

from rlsurgery.agents.on_policy import OnPolicySurgicalMixin


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
        env = self._init_surgeries(surgeries, env, verbose)
        with self._sb3_input_errors():
            super().__init__(
                policy,
                env,
                learning_rate=learning_rate,
                n_steps=n_steps,
                batch_size=batch_size,
                gamma=gamma,
                cg_max_steps=cg_max_steps,
                cg_damping=cg_damping,
                line_search_shrinking_factor=line_search_shrinking_factor,
                line_search_max_iter=line_search_max_iter,
                n_critic_updates=n_critic_updates,
                gae_lambda=gae_lambda,
                use_sde=use_sde,
                sde_sample_freq=sde_sample_freq,
                rollout_buffer_class=rollout_buffer_class,
                rollout_buffer_kwargs=rollout_buffer_kwargs,
                normalize_advantage=normalize_advantage,
                target_kl=target_kl,
                sub_sampling_factor=sub_sampling_factor,
                stats_window_size=stats_window_size,
                tensorboard_log=tensorboard_log,
                policy_kwargs=policy_kwargs,
                verbose=verbose,
                seed=seed,
                device=device,
                _init_setup_model=False,
            )
        if _init_setup_model:
            self._setup_model()
