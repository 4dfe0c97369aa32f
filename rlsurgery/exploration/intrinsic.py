"""Intrinsic rewards as a ``VecEnvWrapper``: one mechanism for every SB3 algorithm.

An :class:`IntrinsicReward` model scores each transition (s, a, s') with a novelty
bonus b and learns from the transitions it sees. :class:`IntrinsicRewardVecEnv` puts
one such model around a vectorized environment::

    r_total = r_env + c(t) · b(s, a, s')

so PPO, A2C, DQN and SAC all receive the same shaped reward without any change to
their training code. The extrinsic reward stays visible: Monitor statistics
(``ep_info_buffer``, ``rollout/ep_rew_mean``) are recorded below the wrapper and so
count only the environment's reward, and every ``info`` carries ``intrinsic_reward``.

Usable without a surgical agent too::

    env = IntrinsicRewardVecEnv(make_vec_env("MountainCar-v0"), RNDModel(observation_space))
    PPO("MlpPolicy", env).learn(10_000)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_flattened_obs_dim, preprocess_obs
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from rlsurgery.runtime.wrappers import SurgeryVecEnvWrapper


class RunningMoments(nn.Module):
    """Running mean and variance of a stream of tensors (parallel update of Chan et al.).

    :param shape: shape of one sample
    """

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.register_buffer("mean", th.zeros(shape))
        self.register_buffer("var", th.ones(shape))
        self.register_buffer("count", th.tensor(1e-4, dtype=th.float64))

    @th.no_grad()
    def update(self, x: th.Tensor) -> None:
        """Fold a batch ``x`` of shape (B, *shape) into the moments."""
        batch_mean, batch_var, n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        m2 = self.var * self.count + batch_var * n + delta.pow(2) * self.count * n / total
        self.var.copy_(m2 / total)
        self.count.fill_(float(total))

    @property
    def samples(self) -> float:
        """How many samples the moments are made of."""
        return float(self.count)

    def normalize(self, x: th.Tensor, clip: float | None = None) -> th.Tensor:
        """(x − μ) / σ, optionally clipped to [−clip, clip]."""
        out = (x - self.mean) / th.sqrt(self.var + 1e-8)
        return out.clamp(-clip, clip) if clip is not None else out


def flat_observations(obs: np.ndarray, space: spaces.Space, device: th.device) -> th.Tensor:
    """Observations as a float tensor (B, D): SB3's preprocessing (one-hot, /255), flattened."""
    tensor = th.as_tensor(np.asarray(obs), device=device)
    return preprocess_obs(tensor, space, normalize_images=True).float().reshape(tensor.shape[0], -1)


def mlp(sizes: list[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class IntrinsicReward(nn.Module):
    """A novelty model: ``bonus`` scores transitions, ``observe`` learns from them.

    Subclasses implement :meth:`bonus` and may override :meth:`observe`. The module's
    parameters, buffers and extra state are saved inside a surgical agent's zip.

    :param observation_space: the env's observation space
    :param action_space: the env's action space
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space | None = None) -> None:
        super().__init__()
        if isinstance(observation_space, spaces.Dict):
            raise TypeError("intrinsic rewards need non-Dict observations")
        self.observation_space = observation_space
        self.action_space = action_space
        self.obs_dim = get_flattened_obs_dim(observation_space)

    @property
    def device(self) -> th.device:
        """Where the model's tensors live."""
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return th.device("cpu")

    def bonus(self, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """b(s, a, s') for a batch of transitions, shape (B,)."""
        raise NotImplementedError(f"{type(self).__name__} must define bonus()")

    def observe(self, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray) -> None:
        """Learn from a batch of transitions (after their bonus was computed)."""


class IntrinsicRewardVecEnv(SurgeryVecEnvWrapper):
    """Adds ``coefficient() · model.bonus(s, a, s')`` to the rewards of ``venv``.

    :param venv: the vectorized environment
    :param model: the novelty model (trained here, on every transition the env produces)
    :param coefficient: the bonus weight c, a number or a function called at every step
    :param name: label of the bonus in ``info`` (``info["intrinsic/<name>"]``)
    """

    def __init__(
        self,
        venv: VecEnv,
        model: IntrinsicReward,
        coefficient: float | Callable[[], float] = 1.0,
        name: str = "bonus",
    ) -> None:
        super().__init__(venv, name)
        self.model = model
        self.coefficient = coefficient if callable(coefficient) else (lambda c=float(coefficient): c)
        self._obs: np.ndarray | None = None
        self._actions: np.ndarray | None = None
        #: mean bonus (before the coefficient) of the last step
        self.last_bonus = 0.0
        self._bonus_sum, self._bonus_count, self._coef = 0.0, 0, 0.0

    log_prefix = "intrinsic"

    def pop_statistics(self) -> dict[str, float]:
        """Mean bonus per step (``""``: logged as ``rollout/intrinsic_<name>``) and the current
        coefficient (``"coef"``: ``rollout/intrinsic_<name>_coef``) since the last call."""
        if self._bonus_count == 0:
            return {}
        stats = {"": self._bonus_sum / self._bonus_count, "coef": self._coef}
        self._bonus_sum, self._bonus_count = 0.0, 0
        return stats

    def continue_from(self, obs: np.ndarray) -> None:
        """Take ``obs`` as the current observations (an env handed over without a reset)."""
        self._obs = np.array(obs, copy=True)

    def reset(self) -> Any:
        obs = self.venv.reset()
        self._obs = np.array(obs, copy=True)
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.array(actions, copy=True)
        self.venv.step_async(actions)

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = self.venv.step_wait()
        assert self._obs is not None, "reset() the environment before stepping it"
        next_obs = np.array(obs, copy=True)
        for i, done in enumerate(dones):
            terminal = infos[i].get("terminal_observation") if done else None
            if terminal is not None:
                next_obs[i] = terminal  # the transition's s', not the reset observation
        bonus = np.asarray(self.model.bonus(self._obs, self._actions, next_obs), dtype=np.float32)
        self.model.observe(self._obs, self._actions, next_obs)
        coef = float(self.coefficient())
        for i, info in enumerate(infos):
            info[f"intrinsic/{self.name}"] = float(bonus[i])
            info["intrinsic_reward"] = info.get("intrinsic_reward", 0.0) + coef * float(bonus[i])
        self.last_bonus = float(bonus.mean())
        self._bonus_sum += float(bonus.sum())
        self._bonus_count += len(bonus)
        self._coef = coef
        self._obs = np.array(obs, copy=True)
        return obs, (rewards + coef * bonus).astype(np.float32), dones, infos
