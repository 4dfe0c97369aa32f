"""Structured pruning: the networks physically shrink, by the stated criterion."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from torch import nn

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.nets.data import layer_outputs, sample_observations
from rlsurgery.nets.mlp import mlp_stacks
from tests.test_roundtrip import IMAGE_ENV, env_for

DQN_KW = dict(learning_starts=32, batch_size=16, buffer_size=500, policy_kwargs=dict(net_arch=[32, 32]))


def test_neuron_pruning_drops_the_least_active_units(tmp_path):
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **DQN_KW).learn(300)
    (stack,) = mlp_stacks(model.q_net)
    observations = sample_observations(model, 128, 0, "test", "agent")
    (first,) = layer_outputs(model, [stack.block(0)[-1]], observations)
    activity = first.abs().mean(0)
    expected = activity.topk(16).indices.sort().values
    kept_rows = stack.linear(0).weight[expected].detach().clone()
    before = sum(p.numel() for p in model.q_net.parameters())
    rls.operate(model, "neuron_pruning:amount=0.5,samples=128")
    (stack,) = mlp_stacks(model.q_net)
    assert stack.widths == [16, 16] and stack.readers(1)[0].in_features == 16
    # the kept units of the first layer are exactly the 16 most active on the same states
    th.testing.assert_close(stack.linear(0).weight, kept_rows)
    after = sum(p.numel() for p in model.q_net.parameters())
    assert after == 4 * 16 + 16 + 16 * 16 + 16 + 16 * 2 + 2 < before
    assert (
        model.surgery_state["neuron_pruning"].result["parameters_after"] == after
        and model.surgery_state["neuron_pruning"].result["parameters_before"] == before
    )
    # the target network has the same shapes; the agent trains on; save/load rebuilds the shapes
    assert [s.widths for s in mlp_stacks(model.q_net_target)] == [[16, 16]]
    model.learn(100)
    model.save(tmp_path / "m.zip")
    loaded = rls.load(tmp_path / "m.zip")
    obs = observations.numpy()
    np.testing.assert_array_equal(
        model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
    )
    # weight criterion on PPO: units with the largest incoming norm survive
    ppo = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0, n_steps=64, batch_size=32)
    norms = ppo.policy.mlp_extractor.policy_net[0].weight.detach().norm(dim=1) ** 2
    norms = (norms + ppo.policy.mlp_extractor.policy_net[0].bias.detach() ** 2).sqrt()
    rows = (
        ppo.policy.mlp_extractor.policy_net[0].weight[norms.topk(48).indices.sort().values].detach().clone()
    )
    rls.operate(ppo, "neuron_pruning:amount=0.25,criterion=weight")
    th.testing.assert_close(ppo.policy.mlp_extractor.policy_net[0].weight, rows)
    assert ppo.policy.action_net.in_features == 48
    ppo.learn(64)


def test_filter_pruning_shrinks_the_convolutions(tmp_path):
    env_for(["attention_transfer"])  # registers the tiny image env
    kw = dict(
        buffer_size=200,
        learning_starts=16,
        batch_size=8,
        policy_kwargs=dict(features_extractor_kwargs=dict(features_dim=16), net_arch=[16]),
    )
    model = SurgicalDQN("CnnPolicy", IMAGE_ENV, seed=0, **kw).learn(40)
    cnn = model.q_net.features_extractor.cnn
    convs = [m for m in cnn if isinstance(m, nn.Conv2d)]
    l1 = convs[0].weight.detach().abs().sum(dim=(1, 2, 3))
    kept = convs[0].weight[l1.topk(16).indices.sort().values].detach().clone()
    rls.operate(model, "filter_pruning:amount=0.5")
    convs = [m for m in cnn if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 32]
    assert [c.in_channels for c in convs] == [1, 16, 32]
    th.testing.assert_close(convs[0].weight, kept)
    assert model.q_net.features_extractor.linear[0].in_features == 32 * 1 * 1
    target_convs = [m for m in model.q_net_target.features_extractor.cnn if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in target_convs] == [16, 32, 32]
    model.learn(20)
    model.save(tmp_path / "m.zip")
    loaded = rls.load(tmp_path / "m.zip")
    obs = np.stack([model.observation_space.sample() for _ in range(4)])
    np.testing.assert_array_equal(
        model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
    )
    with pytest.raises(
        IncompatibleSurgeryError, match=r"filter_pruning: .* no convolutional feature extractor"
    ):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["filter_pruning"], **DQN_KW)


def test_structured_pruning_removes_the_least_useful_layer(tmp_path):
    kw = dict(DQN_KW, policy_kwargs=dict(net_arch=[16, 16, 16]))
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **kw).learn(100)
    # make hidden layer 1 nearly harmless to remove: tiny weights into the ReLU-idempotent path
    (stack,) = mlp_stacks(model.q_net)
    with th.no_grad():
        stack.linear(1).weight.copy_(th.eye(16) + 1e-4 * th.randn(16, 16))
        stack.linear(1).bias.zero_()
    model.q_net_target.load_state_dict(model.q_net.state_dict())
    rls.operate(model, "structured_pruning:samples=64")
    assert model.surgery_log[-1]["params"]["chosen"] == [1]
    (stack,) = mlp_stacks(model.q_net)
    assert (
        stack.widths == [16, 16]
        and model.surgery_state["structured_pruning"].result["parameters_after"]
        < model.surgery_state["structured_pruning"].result["parameters_before"]
    )
    model.save(tmp_path / "m.zip")
    loaded = rls.load(tmp_path / "m.zip")
    assert [s.widths for s in mlp_stacks(loaded.q_net)] == [[16, 16]]
    # at build time the choice is written into the log too, so load rebuilds the same layers
    built = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["structured_pruning:samples=64"],
        **dict(DQN_KW, policy_kwargs=dict(net_arch=[8, 16, 24])),
    )
    chosen = built.surgery_log[0]["params"]["chosen"]
    assert len(chosen) == 1
    built.save(tmp_path / "b.zip")
    assert [s.widths for s in mlp_stacks(rls.load(tmp_path / "b.zip").q_net)] == [
        s.widths for s in mlp_stacks(built.q_net)
    ]
    with pytest.raises(IncompatibleSurgeryError, match="would leave no hidden layer in q_net"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["structured_pruning:layers=2"], **DQN_KW)
