"""DeepSea: API checks, the action mapping, and the optimal return by brute force."""

from __future__ import annotations

import itertools
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from rlsurgery.envs.deep_sea import DeepSeaEnv


def test_passes_gymnasium_and_sb3_checks():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning either
        gym_check_env(gym.make("rlsurgery/DeepSea-v0", size=6).unwrapped)
        sb3_check_env(gym.make("rlsurgery/DeepSea-v0", size=6).unwrapped)
    env = gym.make("rlsurgery/DeepSea-v0", size=4)
    assert env.observation_space.shape == (16,)


def _play(env: DeepSeaEnv, actions) -> tuple[float, bool]:
    env.reset(seed=0)
    total, found = 0.0, False
    for action in actions:
        _, reward, terminated, truncated, info = env.step(action)
        total += reward
        found = info["found_goal"]
        if terminated or truncated:
            break
    assert terminated
    return total, found


def test_only_the_all_right_path_finds_the_treasure_and_it_is_optimal():
    env = DeepSeaEnv(size=5, move_cost=0.01, randomize_actions=True, mapping_seed=3)
    outcomes = {seq: _play(env, seq) for seq in itertools.product([0, 1], repeat=4)}
    best = max(outcomes.values())
    assert best[0] == pytest.approx(1 - 4 * 0.01 / 5) == pytest.approx(env.optimal_return)
    assert sum(found for _, found in outcomes.values()) == 1  # a single path in 2^4
    # that path takes the cell's "right" action at every step
    env.reset(seed=0)
    path = []
    for _ in range(4):
        path.append(int(env.right_action[env.row, env.column]))
        env.step(path[-1])
    assert outcomes[tuple(path)] == best


def test_move_cost_and_mapping():
    env = DeepSeaEnv(size=10, randomize_actions=False)
    env.reset()
    obs, reward, *_ = env.step(1)
    assert reward == pytest.approx(-0.01 / 10) and env.column == 1
    assert obs.sum() == 1 and obs.reshape(10, 10)[1, 1] == 1  # row 1, column 1
    _, reward, *_ = env.step(0)
    assert reward == 0.0 and env.column == 0
    mapped = DeepSeaEnv(size=10, mapping_seed=1)
    assert 0 < mapped.right_action.mean() < 1  # both indices mean "right" somewhere
    np.testing.assert_array_equal(mapped.right_action, DeepSeaEnv(size=10, mapping_seed=1).right_action)
    assert not np.array_equal(mapped.right_action, DeepSeaEnv(size=10, mapping_seed=2).right_action)


def test_bad_parameters():
    with pytest.raises(ValueError, match="size must be >= 2"):
        DeepSeaEnv(size=1)
    with pytest.raises(ValueError, match="move_cost must be >= 0"):
        DeepSeaEnv(move_cost=-1)
