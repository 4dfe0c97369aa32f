"""SurgicalSAC: SB3's SAC taking surgeries that configure it or wrap its environment.

SAC's train step is SB3's own here (its staged version comes with the policy-surgery
work); surgeries act through hyper-parameters (``configure``: e.g. the entropy
coefficient or target entropy of ``entropy_regularization``), network changes and env
wrappers (intrinsic rewards). With no surgeries it is ``stable_baselines3.SAC``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from stable_baselines3.sac.policies import SACPolicy

from rlsurgery.agents.surgical import SurgicalMixin


class SurgicalSAC(SurgicalMixin, SAC):
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
        env = self._init_surgeries(surgeries, env, verbose)
        with self._sb3_input_errors():
            super().__init__(
                policy,
                env,
                learning_rate=learning_rate,
                buffer_size=buffer_size,
                learning_starts=learning_starts,
                batch_size=batch_size,
                tau=tau,
                gamma=gamma,
                train_freq=train_freq,
                gradient_steps=gradient_steps,
                action_noise=action_noise,
                replay_buffer_class=replay_buffer_class,
                replay_buffer_kwargs=replay_buffer_kwargs,
                optimize_memory_usage=optimize_memory_usage,
                n_steps=n_steps,
                ent_coef=ent_coef,
                target_update_interval=target_update_interval,
                target_entropy=target_entropy,
                use_sde=use_sde,
                sde_sample_freq=sde_sample_freq,
                use_sde_at_warmup=use_sde_at_warmup,
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
