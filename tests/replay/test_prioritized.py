from __future__ import annotations

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from scipy.stats import chisquare
from stable_baselines3.common.callbacks import BaseCallback

from rlsurgery import SurgicalDQN
from rlsurgery.replay.prioritized import PrioritizedReplayBuffer, importance_weights
from rlsurgery.value.prioritized_replay import annealed_beta
from tests.replay.test_n_step import fill


def make_buffer(n=50, n_envs=1, alpha=0.6, beta=0.4):
    buffer = PrioritizedReplayBuffer(
        n, spaces.Box(-5, 5, (3,)), spaces.Discrete(2), n_envs=n_envs, alpha=alpha, beta=beta
    )
    fill([buffer], n_envs, n // n_envs)
    return buffer


def test_sampling_frequencies_match_priorities():
    np.random.seed(0)
    buffer = make_buffer(n=40, alpha=0.6)
    errors = np.random.default_rng(1).uniform(0, 5, 40)
    buffer.update_priorities(np.arange(40), errors)
    counts = np.zeros(40)
    for _ in range(400):
        np.add.at(counts, buffer.sample(64).indices, 1)
    expected_p = (errors + buffer.eps) ** 0.6
    expected = counts.sum() * expected_p / expected_p.sum()
    assert chisquare(counts, expected).pvalue > 1e-3
    # the same counts are clearly not uniform: the test can fail
    assert chisquare(counts, np.full(40, counts.sum() / 40)).pvalue < 1e-6


def test_importance_weights_match_formula():
    np.random.seed(3)
    buffer = make_buffer(n=30, alpha=0.7, beta=0.5)
    errors = np.linspace(0.1, 3.0, 30)
    buffer.update_priorities(np.arange(30), errors)
    sample = buffer.sample(16)
    p = (errors + buffer.eps) ** 0.7
    probs = p[sample.indices] / p.sum()
    w = (30 * probs) ** -0.5
    np.testing.assert_allclose(sample.weights.numpy(), w / w.max(), rtol=1e-5)
    assert sample.weights.max().item() == pytest.approx(1.0)
    np.testing.assert_allclose(importance_weights(np.array([0.1, 0.4]), 5, 1.0), [1.0, 0.25])


def test_new_transitions_enter_at_max_priority():
    buffer = make_buffer(n=20, alpha=0.5)
    np.testing.assert_allclose(buffer.priorities(), 1.0)
    buffer.update_priorities(np.array([0, 1]), np.array([8.0, 0.5]))
    fill([buffer], 1, 1, seed=9)  # overwrites position 0 (the buffer is full)
    assert buffer.max_priority == pytest.approx(8.0 + buffer.eps)
    assert buffer.priorities()[0] == pytest.approx((8.0 + buffer.eps) ** 0.5)
    assert buffer.priorities()[1] == pytest.approx((0.5 + buffer.eps) ** 0.5)


def test_vectorized_flat_indices_address_position_and_env():
    buffer = make_buffer(n=20, n_envs=2)  # 10 positions x 2 envs
    buffer.update_priorities(np.arange(20), np.zeros(20))
    buffer.update_priorities(np.array([7]), np.array([100.0]))  # position 3, env 1
    sample = buffer.sample(8)
    assert (sample.indices == 7).mean() > 0.9
    hit = sample.observations[sample.indices == 7][0].numpy()
    np.testing.assert_array_equal(hit, buffer.observations[3, 1])


def test_alpha_zero_is_uniform():
    buffer = make_buffer(n=10, alpha=0.0)
    buffer.update_priorities(np.arange(10), np.arange(10.0))
    np.testing.assert_allclose(buffer.priorities(), 1.0)


def test_agent_writes_priorities_from_td_error(tiny_kwargs, monkeypatch):
    model = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", seed=0, surgeries=["prioritized_replay:alpha=0.6"], **tiny_kwargs
    )
    model.learn(300)
    seen = []
    original = model.sample_batch
    monkeypatch.setattr(model, "sample_batch", lambda bs: seen.append(original(bs)) or seen[-1])
    model.train(gradient_steps=1, batch_size=32)
    batch = seen[0]
    indices, counts = np.unique(batch.indices, return_counts=True)
    once = indices[counts == 1]
    position = {int(i): k for k, i in enumerate(batch.indices)}
    expected = (batch.td_error.numpy()[[position[int(i)] for i in once]] + 1e-6) ** 0.6
    np.testing.assert_allclose(model.replay_buffer.tree.get(once), expected, rtol=1e-5)
    assert batch.weights is not None and batch.weights.shape == (32,)


def test_weights_scale_the_loss(tiny_kwargs):
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=["prioritized_replay"], **tiny_kwargs)
    model.learn(200)
    batch = model.sample_batch(16)
    loss = model.compute_loss(batch)
    th.testing.assert_close(loss, (batch.weights * batch.elementwise_loss).mean())


class RecordBeta(BaseCallback):
    def __init__(self):
        super().__init__()
        self.betas: list[float] = []

    def _on_step(self) -> bool:
        self.betas.append(self.model.replay_buffer.beta)
        return True


def test_beta_anneals_linearly_to_one(tiny_kwargs):
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["prioritized_replay:beta=0.4,beta_fraction=0.5"],
        **tiny_kwargs,
    )
    record = RecordBeta()
    model.learn(200, callback=record)
    betas = np.array(record.betas)
    # at env step t (t = 0 .. 199 steps done before it): β = 0.4 + 0.6 · min(1, (t / 200) / 0.5)
    expected = [annealed_beta(0.4, t / 200, 0.5) for t in range(200)]
    np.testing.assert_allclose(betas, expected, rtol=1e-6)
    assert (
        betas[50] == pytest.approx(0.7)
        and betas[100] == pytest.approx(1.0)
        and betas[-1] == pytest.approx(1.0)
    )
