"""Task families: CartPole's physics as keywords, a shifted sensor, permuted observations and actions."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gymnasium_check
from stable_baselines3.common.env_checker import check_env as sb3_check

import rlsurgery  # noqa: F401  (registers the ids)
from rlsurgery.envs import variants

VARIANTS = [
    ("rlsurgery/CartPole-v1", {}),
    ("rlsurgery/CartPole-v1", {"length": 1.0, "masspole": 0.3, "gravity": 12.0, "force_mag": 8.0}),
    (
        "rlsurgery/Shifted-v0",
        {"env_id": "CartPole-v1", "scale": [1, 2, 1, 0.5], "offset": 0.1, "noise_std": 0.05},
    ),
    ("rlsurgery/Permuted-v0", {"env_id": "CartPole-v1", "task": 2, "permute_actions": True}),
    ("rlsurgery/Shifted-v0", {"env_id": "Pendulum-v1", "offset": 1.0, "env_kwargs": {"g": 11.0}}),
    ("rlsurgery/Permuted-v0", {"env_id": "rlsurgery/CartPole-v1", "task": 0, "env_kwargs": {"length": 0.8}}),
]


@pytest.mark.parametrize(("env_id", "kwargs"), VARIANTS)
def test_variants_pass_gymnasium_and_sb3_checkers(env_id, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # the checkers' advice on unbounded Box spaces, as for CartPole itself
        gymnasium_check(gym.make(env_id, **kwargs), skip_render_check=True)  # the wrappers too
        sb3_check(gym.make(env_id, **kwargs))


def rollout(env, actions, seed=3):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for action in actions:
        obs, _, terminated, truncated, _ = env.step(action)
        out.append(obs)
        if terminated or truncated:
            break
    return np.array(out)


def test_the_default_cartpole_variant_is_cartpole_step_for_step_and_physics_change_it():
    actions = [t % 2 for t in range(40)]
    plain = rollout(gym.make("CartPole-v1"), actions)
    np.testing.assert_array_equal(rollout(gym.make("rlsurgery/CartPole-v1"), actions), plain)
    assert gym.make("rlsurgery/CartPole-v1").spec.max_episode_steps == 500
    longer = rollout(gym.make("rlsurgery/CartPole-v1", length=1.0), actions)
    n = min(len(longer), len(plain))
    assert np.array_equal(longer[0], plain[0]) and not np.allclose(longer[1:n, 3], plain[1:n, 3])
    env = gym.make("rlsurgery/CartPole-v1", length=1.0, masspole=0.5).unwrapped
    assert env.polemass_length == pytest.approx(0.5) and env.total_mass == pytest.approx(1.5)
    with pytest.raises(ValueError, match="length must be > 0"):
        gym.make("rlsurgery/CartPole-v1", length=0.0)


def test_a_shifted_sensor_is_the_affine_map_plus_noise_of_the_stated_size():
    actions = [t % 2 for t in range(30)]
    plain = rollout(gym.make("CartPole-v1"), actions)
    scale, offset = np.array([1.0, 2.0, -1.0, 0.5]), np.array([0.1, 0.0, -0.2, 0.3])
    shifted = rollout(
        gym.make("rlsurgery/Shifted-v0", env_id="CartPole-v1", scale=scale, offset=offset), actions
    )
    np.testing.assert_allclose(shifted, (scale * plain + offset).astype(np.float32), rtol=1e-6)
    noisy = gym.make("rlsurgery/Shifted-v0", env_id="CartPole-v1", noise_std=0.5)
    residuals = rollout(noisy, actions) - plain
    assert 0.35 < residuals.std() < 0.65 and abs(residuals.mean()) < 0.2
    np.testing.assert_array_equal(rollout(noisy, actions), rollout(noisy, actions))  # seeded by reset
    with pytest.raises(ValueError, match="scale must be a number or a list of 4"):
        gym.make("rlsurgery/Shifted-v0", env_id="CartPole-v1", scale=[1, 2])


def test_permuted_tasks_are_fixed_distinct_permutations_with_sign_flips():
    actions = [t % 2 for t in range(30)]
    plain = rollout(gym.make("CartPole-v1"), actions)
    permutations = []
    for task in range(3):
        env = gym.make("rlsurgery/Permuted-v0", env_id="CartPole-v1", task=task)
        wrapper = env.env.env  # below the passive checker and the order enforcer
        assert isinstance(wrapper, variants.PermutedObservation)
        np.testing.assert_allclose(
            rollout(env, actions), wrapper.signs * plain[:, wrapper.permutation], rtol=1e-6
        )
        permutations.append((tuple(wrapper.permutation), tuple(wrapper.signs)))
    assert len(set(permutations)) == 3
    again = variants.task_permutation(1, 4)
    assert (tuple(again[0]), tuple(again[1])) == permutations[1]


def test_permuted_actions_relabel_the_action_set():
    env = gym.make(
        "rlsurgery/Permuted-v0",
        env_id="CartPole-v1",
        task=0,
        permute_observations=False,
        permute_actions=True,
    )
    wrapper = env.env.env
    assert isinstance(wrapper, variants.PermutedActions)
    mapping = wrapper.action_permutation
    assert sorted(mapping) == [0, 1] and list(mapping) != [0, 1]
    plain = rollout(gym.make("CartPole-v1"), [int(mapping[t % 2]) for t in range(30)])
    np.testing.assert_array_equal(rollout(env, [t % 2 for t in range(30)]), plain)
    with pytest.raises(ValueError, match="needs a Discrete action space"):
        gym.make("rlsurgery/Permuted-v0", env_id="Pendulum-v1", permute_actions=True)
