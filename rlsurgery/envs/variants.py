"""Task families: variants of an environment that a transferred or continual agent meets.

Three ways to make a related task, each usable by Gymnasium id from every command (``train``,
``compare``, ``tune``, study YAMLs) with its settings as ``env_kwargs``:

* ``rlsurgery/CartPole-v1``: :class:`CartPoleVariantEnv`, Gymnasium's CartPole-v1 with its physical
  constants as keywords (``length``: half the pole's length, 0.5; ``masspole`` 0.1; ``masscart`` 1.0;
  ``gravity`` 9.8; ``force_mag`` 10.0). With no keywords it is CartPole-v1, step for step.
  (Pendulum-v1 takes ``g`` and LunarLander-v3 ``gravity``, ``enable_wind``, ``wind_power``,
  ``turbulence_power`` already: use them directly.)
* ``rlsurgery/Shifted-v0``: any env seen through :class:`AffineObservation`, a miscalibrated sensor,
  ``o' = scale ⊙ o + offset + ε``, ε ~ N(0, noise_std²) drawn per step.
* ``rlsurgery/Permuted-v0``: any env seen through :class:`PermutedObservation` (a fixed permutation
  and sign flip of the observation's entries) and, with ``permute_actions``, :class:`PermutedActions`
  (a fixed permutation of a ``Discrete`` action set); the permutation is drawn from ``task``, so
  ``task=0, 1, 2`` are three fixed "permuted tasks" (Goodfellow et al. 2013,
  https://arxiv.org/abs/1312.6211; Kirkpatrick et al. 2017, https://arxiv.org/abs/1612.00796).

The wrapped env is named by ``env_id`` with its own ``env_kwargs``::

    gym.make("rlsurgery/Shifted-v0", env_id="CartPole-v1", scale=[1, 2, 1, 0.5], offset=0.1, noise_std=0.05)
    gym.make("rlsurgery/Permuted-v0", env_id="rlsurgery/CartPole-v1", task=2, env_kwargs={"length": 1.0})

>>> wrapper = PermutedObservation(gym.make("CartPole-v1"), task=1)
>>> wrapper.permutation.tolist(), wrapper.signs.tolist()  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from rlsurgery.envs import ensure_registered

#: salt mixed into a task's seed, so that task 0's permutation is not the identity of seed 0
PERMUTATION_SALT = 7_919


class CartPoleVariantEnv(CartPoleEnv):
    """Gymnasium's CartPole with its physical constants as keywords (defaults: Gymnasium's).

    :param length: half the pole's length (m)
    :param masspole: the pole's mass (kg)
    :param masscart: the cart's mass (kg)
    :param gravity: the gravitational acceleration (m/s²)
    :param force_mag: the force of a push (N)
    """

    def __init__(
        self,
        length: float = 0.5,
        masspole: float = 0.1,
        masscart: float = 1.0,
        gravity: float = 9.8,
        force_mag: float = 10.0,
        sutton_barto_reward: bool = False,
        render_mode: str | None = None,
    ) -> None:
        for name, value in (
            ("length", length),
            ("masspole", masspole),
            ("masscart", masscart),
            ("gravity", gravity),
            ("force_mag", force_mag),
        ):
            if not float(value) > 0:
                raise ValueError(f"CartPole variant: {name} must be > 0 (got {value!r})")
        super().__init__(sutton_barto_reward=sutton_barto_reward, render_mode=render_mode)
        self.length, self.masspole, self.masscart = float(length), float(masspole), float(masscart)
        self.gravity, self.force_mag = float(gravity), float(force_mag)
        self.total_mass = self.masspole + self.masscart
        self.polemass_length = self.masspole * self.length


def _vector(value: float | Sequence[float], size: int, name: str) -> np.ndarray:
    """``value`` as a float64 vector of ``size`` entries (a scalar is broadcast)."""
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 0:
        return np.full(size, float(array))
    if array.shape != (size,):
        raise ValueError(f"{name} must be a number or a list of {size} numbers (got shape {array.shape})")
    return array


def _flat_box(env: gym.Env, what: str) -> spaces.Box:
    space = env.observation_space
    if not isinstance(space, spaces.Box) or len(space.shape) != 1:
        raise ValueError(f"{what} needs a 1-D Box observation space (got {space})")
    return space


class AffineObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """A miscalibrated sensor: ``o' = scale ⊙ o + offset + ε``, ε ~ N(0, noise_std²) per entry and step.

    The noise is drawn from a generator seeded with ``noise_seed`` and reseeded from ``reset(seed=)``,
    so a seeded run sees the same noise. The observation space is unbounded, whatever the calibration,
    so that every task of a sequence of shifted sensors has the same space.
    """

    def __init__(
        self,
        env: gym.Env,
        scale: float | Sequence[float] = 1.0,
        offset: float | Sequence[float] = 0.0,
        noise_std: float | Sequence[float] = 0.0,
        noise_seed: int = 0,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, scale=scale, offset=offset, noise_std=noise_std, noise_seed=noise_seed
        )
        gym.ObservationWrapper.__init__(self, env)
        space = _flat_box(env, "AffineObservation")
        size = space.shape[0]
        self.scale = _vector(scale, size, "scale")
        self.offset = _vector(offset, size, "offset")
        self.noise_std = _vector(noise_std, size, "noise_std")
        if (self.noise_std < 0).any():
            raise ValueError(f"noise_std must be >= 0 (got {noise_std!r})")
        self.noise_seed = int(noise_seed)
        self._noise: np.random.Generator | None = None
        # unbounded: every sensor calibration of a sequence of shifted tasks has the same space (SB3's
        # set_env requires it), and noise is unbounded anyway
        self.observation_space = spaces.Box(-np.inf, np.inf, space.shape, dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self._noise = np.random.default_rng([self.noise_seed % 2**32, seed % 2**32])
        elif self._noise is None:  # unseeded: from the env's own generator (distinct per vec-env worker)
            drawn = int(self.np_random.integers(2**32))
            self._noise = np.random.default_rng([self.noise_seed % 2**32, drawn])
        return super().reset(seed=seed, options=options)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        shifted = self.scale * observation + self.offset
        if self.noise_std.any():
            if self._noise is None:
                raise gym.error.ResetNeeded("AffineObservation: call reset() before step()")
            shifted = shifted + self.noise_std * self._noise.standard_normal(shifted.shape)
        return shifted.astype(np.float32)


def task_permutation(task: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed (permutation, signs) of ``task`` over ``size`` entries; task ids give distinct draws."""
    rng = np.random.default_rng([PERMUTATION_SALT, int(task)])
    return rng.permutation(size), rng.choice(np.array([-1.0, 1.0]), size=size)


class PermutedObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """A permuted task: ``o'_i = s_i · o_{π(i)}`` with a fixed permutation π and signs s of ``task``.

    The observation space is ``[−b, b]`` in every entry, b the largest bound of the env's space, so that
    all permuted tasks of one env share a space.
    """

    def __init__(self, env: gym.Env, task: int = 0, flip_signs: bool = True) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, task=task, flip_signs=flip_signs)
        gym.ObservationWrapper.__init__(self, env)
        space = _flat_box(env, "PermutedObservation")
        self.permutation, signs = task_permutation(task, space.shape[0])
        self.signs = signs if flip_signs else np.ones_like(signs)
        # one space for every task of the family (SB3's set_env requires it): ±max |bound|
        bound = np.max(np.abs(np.concatenate([space.low, space.high])))
        self.observation_space = spaces.Box(-bound, bound, space.shape, dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return (self.signs * observation[self.permutation]).astype(np.float32)


class PermutedActions(gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """A fixed relabelling of a ``Discrete`` action set: the agent's action a runs the env's π(a).

    π is drawn from ``task``; a draw that is the identity is rotated by one, so π always moves an action.
    """

    def __init__(self, env: gym.Env, task: int = 0) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, task=task)
        gym.ActionWrapper.__init__(self, env)
        if not isinstance(env.action_space, spaces.Discrete):
            raise ValueError(f"PermutedActions needs a Discrete action space (got {env.action_space})")
        permutation, _ = task_permutation(task + 1_000, int(env.action_space.n))
        if (permutation == np.arange(len(permutation))).all():  # a relabelling that changes something
            permutation = np.roll(permutation, 1)
        self.action_permutation = permutation

    def action(self, action: Any) -> int:
        start = int(self.env.action_space.start)
        return start + int(self.action_permutation[int(action) - start])


def _inner(env_id: str, env_kwargs: dict[str, Any] | None, render_mode: str | None) -> gym.Env:
    ensure_registered(env_id)
    kwargs = dict(env_kwargs or {})
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    return gym.make(env_id, **kwargs)


def make_shifted(
    env_id: str,
    scale: float | Sequence[float] = 1.0,
    offset: float | Sequence[float] = 0.0,
    noise_std: float | Sequence[float] = 0.0,
    noise_seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    render_mode: str | None = None,
) -> gym.Env:
    """``env_id`` (made with ``env_kwargs``) seen through :class:`AffineObservation`."""
    return AffineObservation(_inner(env_id, env_kwargs, render_mode), scale, offset, noise_std, noise_seed)


def make_permuted(
    env_id: str,
    task: int = 0,
    flip_signs: bool = True,
    permute_observations: bool = True,
    permute_actions: bool = False,
    env_kwargs: dict[str, Any] | None = None,
    render_mode: str | None = None,
) -> gym.Env:
    """``env_id`` (made with ``env_kwargs``) with ``task``'s fixed observation (and action) permutation."""
    env = _inner(env_id, env_kwargs, render_mode)
    if permute_observations:
        env = PermutedObservation(env, task, flip_signs)
    if permute_actions:
        env = PermutedActions(env, task)
    return env
