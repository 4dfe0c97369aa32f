from __future__ import annotations

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import NStepReplayBuffer

from rlsurgery import SurgicalDQN
from rlsurgery.replay.n_step import n_step_samples
from rlsurgery.replay.prioritized import PrioritizedReplayBuffer
from tests.agents.test_dqn import ZOO_CARTPOLE, assert_same_parameters


def fill(buffers, n_envs, steps, seed=0):
    """Add the same random transitions (terminals and truncations included) to every buffer."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        obs = rng.normal(size=(n_envs, 3)).astype(np.float32)
        next_obs = rng.normal(size=(n_envs, 3)).astype(np.float32)
        action = rng.integers(0, 2, size=(n_envs,))
        reward = rng.normal(size=n_envs).astype(np.float32)
        done = rng.uniform(size=n_envs) < 0.15
        truncated = done & (rng.uniform(size=n_envs) < 0.4)
        infos = [{"TimeLimit.truncated": bool(tr)} for tr in truncated]
        for b in buffers:
            b.add(obs, next_obs, action, reward, done.astype(np.float32), infos)


@pytest.mark.parametrize(
    ("n_steps", "steps"),
    [(1, 30), (3, 30), (3, 57), (5, 200)],
    ids=["n1", "n3-partial", "n3-wrapped", "n5-wrapped"],
)
def test_matches_sb3_n_step_buffer(n_steps, steps):
    n_envs, size, gamma = 2, 40, 0.9
    args = (size, spaces.Box(-5, 5, (3,)), spaces.Discrete(2))
    sb3 = NStepReplayBuffer(*args, n_envs=n_envs, n_steps=n_steps, gamma=gamma)
    ours = PrioritizedReplayBuffer(*args, n_envs=n_envs, n_steps=n_steps, gamma=gamma)
    fill([sb3, ours], n_envs, steps)
    upper = sb3.buffer_size if sb3.full else sb3.pos
    inds = np.arange(upper)
    np.random.seed(7)
    expected = sb3._get_samples(inds)
    np.random.seed(7)
    env_inds = np.random.randint(0, n_envs, size=inds.shape)
    got = n_step_samples(ours, inds, env_inds, n_steps, gamma)
    for field in ("observations", "actions", "next_observations", "dones", "rewards", "discounts"):
        np.testing.assert_allclose(got[field], getattr(expected, field).numpy(), rtol=1e-6, err_msg=field)


def test_prioritized_buffer_returns_n_step_samples():
    buffer = PrioritizedReplayBuffer(50, spaces.Box(-5, 5, (3,)), spaces.Discrete(2), n_steps=3, gamma=0.5)
    fill([buffer], 1, 30)
    sample = buffer.sample(8)
    assert sample.rewards.shape == sample.discounts.shape == (8, 1)
    assert set(np.round(sample.discounts.numpy().ravel(), 6)) <= {0.5, 0.25, 0.125}


def test_agent_n_step_equals_sb3_n_steps():
    kwargs = dict(ZOO_CARTPOLE, train_freq=64, gradient_steps=16)
    sb3 = DQN("MlpPolicy", "CartPole-v1", seed=1, n_steps=3, **kwargs).learn(2500)
    ours = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=1, surgeries=["n_step_returns:n=3"], **kwargs).learn(
        2500
    )
    assert isinstance(ours.replay_buffer, NStepReplayBuffer) and ours.replay_buffer.n_steps == 3
    assert_same_parameters(sb3, ours)


def test_n_step_discount_reaches_the_target(tiny_kwargs):
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        gamma=0.5,
        surgeries=["n_step_returns:n=2", "prioritized_replay"],
        **tiny_kwargs,
    )
    model.learn(200)
    batch = model.sample_batch(32)
    model.compute_loss(batch)
    with th.no_grad():
        next_q = model.q_net_target(batch.next_observations).max(1, keepdim=True).values
    expected = batch.rewards + (1 - batch.dones) * batch.discounts * next_q
    th.testing.assert_close(batch.target, expected)
    assert (batch.discounts <= 0.5).all()
