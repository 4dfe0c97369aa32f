"""BitFlip: API checks, rewards, and the optimal return (flip each wrong bit once)."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from rlsurgery.envs.bit_flip import BitFlipEnv


@pytest.mark.parametrize("continuous", [False, True])
def test_passes_gymnasium_and_sb3_checks(continuous):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(gym.make("rlsurgery/BitFlip-v0", n_bits=6, continuous=continuous).unwrapped)
        sb3_check_env(gym.make("rlsurgery/BitFlip-v0", n_bits=6, continuous=continuous).unwrapped)


def test_optimal_return_and_compute_reward():
    env = BitFlipEnv(n_bits=8)
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        wrong = np.flatnonzero(obs["observation"] != obs["desired_goal"])
        total, terminated = 0.0, False
        for bit in wrong:  # the optimal policy flips each wrong bit once: return −(d − 1)
            obs, reward, terminated, _, info = env.step(int(bit))
            total += reward
        assert terminated and info["is_success"] and total == -(len(wrong) - 1)
    achieved = np.array([[0, 1, 1], [1, 1, 1]])
    np.testing.assert_array_equal(
        env.compute_reward(achieved, np.array([[0, 1, 1], [0, 1, 1]]), None), [0.0, -1.0]
    )
    # continuous actions flip the bit with the largest component; episodes truncate after n_bits steps
    cont = BitFlipEnv(n_bits=4, continuous=True)
    obs, _ = cont.reset(seed=0)
    before = obs["observation"].copy()
    obs, *_ = cont.step(np.array([-1.0, 0.9, 0.1, 0.0], dtype=np.float32))
    assert obs["observation"][1] != before[1] and (obs["observation"][[0, 2, 3]] == before[[0, 2, 3]]).all()
    assert BitFlipEnv(n_bits=3, render_mode="rgb_array").render().shape == (16, 24, 3)
