from __future__ import annotations

import pytest
import torch as th

from rlsurgery import SurgicalDQN
from rlsurgery.training import evaluate_model
from rlsurgery.value.dueling import DuelingHead, dueling_combine


def test_combine_formula():
    value = th.randn(5, 1, 3)
    advantage = th.randn(5, 4, 3)
    q = dueling_combine(value, advantage)
    th.testing.assert_close(q, value + advantage - advantage.mean(dim=1, keepdim=True))


@pytest.mark.parametrize(
    "surgeries", [["dueling_architecture"], ["dueling_architecture", "distributional_rl:n_atoms=7"]]
)
def test_mean_advantage_is_zero(surgeries):
    model = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", seed=0, policy_kwargs=dict(net_arch=[32, 32]), surgeries=surgeries
    )
    head = model.q_net.q_net
    assert isinstance(head, DuelingHead)
    obs = th.randn(16, 4)
    features = model.q_net.extract_features(obs, model.q_net.features_extractor)
    value, advantage = head.streams(features)
    outputs = model.q_net.outputs(obs)  # (B, A, K)
    # identifiability: the action-mean of the combined outputs is V, i.e. mean_a (A - mean A) = 0
    th.testing.assert_close(outputs.mean(dim=1, keepdim=True), value, atol=1e-6, rtol=0)
    th.testing.assert_close((outputs - value).mean(dim=1), th.zeros(16, model.q_net.atoms), atol=1e-6, rtol=0)
    assert value.shape == (16, 1, model.q_net.atoms)
    assert advantage.shape == (16, 2, model.q_net.atoms)
    assert model.q_net(obs).shape == (16, 2)


def test_stream_layout_and_target_copy():
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        policy_kwargs=dict(net_arch=[32, 16]),
        surgeries=["dueling_architecture:stream_layers=1"],
    )
    head = model.q_net.q_net
    # trunk: 4 -> 32 shared; each stream: 32 -> 16 -> out
    assert [m.out_features for m in head.trunk.modules() if isinstance(m, th.nn.Linear)] == [32]
    assert [m.out_features for m in head.value.modules() if isinstance(m, th.nn.Linear)] == [16, 1]
    assert [m.out_features for m in head.advantage.modules() if isinstance(m, th.nn.Linear)] == [16, 2]
    # streams have separate parameters, and the target network is an exact copy
    assert head.value[0][0].weight.data_ptr() != head.advantage[0][0].weight.data_ptr()
    for (k, a), (_, b) in zip(model.q_net.state_dict().items(), model.q_net_target.state_dict().items()):
        assert th.equal(a, b), k
    # the optimizer trains the new parameters
    optimized = {id(p) for group in model.policy.optimizer.param_groups for p in group["params"]}
    assert {id(p) for p in model.q_net.parameters()} == optimized


def test_no_hidden_layers_gives_linear_streams():
    model = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[]), surgeries=["dueling_architecture"]
    )
    head = model.q_net.q_net
    assert len(list(head.trunk.children())) == 0
    assert model.q_net(th.randn(3, 4)).shape == (3, 2)


@pytest.mark.slow
def test_dueling_dqn_learns_cartpole():
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        learning_rate=2.3e-3,
        batch_size=64,
        buffer_size=100_000,
        learning_starts=1000,
        target_update_interval=10,
        train_freq=256,
        gradient_steps=128,
        exploration_fraction=0.16,
        exploration_final_eps=0.04,
        policy_kwargs=dict(net_arch=[256, 256]),
        surgeries=["dueling_architecture"],
    )
    model.learn(30_000)
    assert evaluate_model(model, "CartPole-v1", episodes=10, seed=123)["mean_return"] >= 200
