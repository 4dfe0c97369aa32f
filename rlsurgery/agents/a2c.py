"""SurgicalA2C: SB3's A2C with the on-policy surgery hooks.

A2C's update is SB3's own (one gradient step per rollout); surgeries act through the
collection hooks (``on_rollout_start`` / ``on_rollout_end``), ``act``, network changes,
hyper-parameters and env wrappers. With no surgeries it is ``stable_baselines3.A2C``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch as th
from stable_baselines3 import A2C
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule

from rlsurgery.agents.on_policy import OnPolicySurgicalMixin


class SurgicalA2C(OnPolicySurgicalMixin, A2C):
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
        env = self._init_surgeries(surgeries, env, verbose)
        with self._sb3_input_errors():
            super().__init__(
                policy,
                env,
                learning_rate=learning_rate,
                n_steps=n_steps,
                gamma=gamma,
                gae_lambda=gae_lambda,
                ent_coef=ent_coef,
                vf_coef=vf_coef,
                max_grad_norm=max_grad_norm,
                rms_prop_eps=rms_prop_eps,
                use_rms_prop=use_rms_prop,
                use_sde=use_sde,
                sde_sample_freq=sde_sample_freq,
                rollout_buffer_class=rollout_buffer_class,
                rollout_buffer_kwargs=rollout_buffer_kwargs,
                normalize_advantage=normalize_advantage,
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
