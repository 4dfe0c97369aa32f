"""Chain (RiverSwim-like): API checks, the MDP table, and the optimal return."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from rlsurgery.envs.chain import LEFT, RIGHT, ChainEnv


def test_passes_gymnasium_and_sb3_checks():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(gym.make("rlsurgery/Chain-v0", horizon=20).unwrapped)
        sb3_check_env(gym.make("rlsurgery/Chain-v0", horizon=20).unwrapped)


def test_transition_table_is_a_distribution_and_matches_the_dynamics():
    env = ChainEnv(n_states=5)
    probabilities, rewards = env.transition_table()
    np.testing.assert_allclose(probabilities.sum(axis=2), 1.0)
    # empirical next-state frequencies of "right" in a middle state match the table
    env.reset(seed=0)
    counts = np.zeros(5)
    for _ in range(20_000):
        env.state, env.t = 2, 0
        env.step(RIGHT)
        counts[env.state] += 1
    np.testing.assert_allclose(counts / counts.sum(), probabilities[2, RIGHT], atol=0.015)
    assert rewards[0, LEFT] == env.left_reward and rewards[4, RIGHT] == pytest.approx(0.95)


def _mean_return(env: ChainEnv, policy, episodes: int) -> float:
    totals = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=episode)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += reward
            done = terminated or truncated
        totals.append(total)
    return float(np.mean(totals))


def test_swimming_right_is_optimal_and_reaches_the_optimal_return():
    env = ChainEnv(n_states=6, horizon=100)
    values = env.optimal_values()
    probabilities, rewards = env.transition_table()
    # with many steps left, "right" is the greedy action in every state
    q = rewards + probabilities @ values[env.horizon - 1]
    assert (q.argmax(axis=1) == RIGHT).all()
    always_right = _mean_return(env, lambda obs: RIGHT, episodes=400)
    assert always_right == pytest.approx(env.optimal_return, rel=0.05)
    # the myopic policy farms the small reward only
    assert _mean_return(env, lambda obs: LEFT, episodes=5) == pytest.approx(100 * env.left_reward)
    assert env.optimal_return > 100 * 100 * env.left_reward


def test_bad_parameters():
    with pytest.raises(ValueError, match="n_states must be >= 3"):
        ChainEnv(n_states=2)
    with pytest.raises(ValueError, match="p_right"):
        ChainEnv(p_right=0.7, p_stay=0.6)
