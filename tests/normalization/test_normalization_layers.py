"""Normalization layers: each normalizes over the axes its formula names; BN's running statistics reach
the target network."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from torch import nn

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.core.errors import IncompatibleSurgeryError
from tests.test_roundtrip import IMAGE_ENV, env_for

KW = dict(learning_starts=32, batch_size=16, buffer_size=500, policy_kwargs=dict(net_arch=[16, 16]))
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d)


def norm_layers(net):
    return [m for m in net.modules() if isinstance(m, NORMS)]


def training_outputs(model, modules, obs):
    """Outputs of ``modules`` in training mode (batch statistics)."""
    captured = {}
    hooks = [
        m.register_forward_hook(lambda mod, _i, out: captured.__setitem__(id(mod), out)) for m in modules
    ]
    model.policy.set_training_mode(True)
    with th.no_grad():
        model.q_net(obs) if hasattr(model, "q_net") else model.policy.evaluate_actions(
            obs, th.zeros(len(obs))
        )
    for h in hooks:
        h.remove()
    return [captured[id(m)] for m in modules]


def test_each_normalization_normalizes_over_its_axes(tmp_path):
    obs = th.as_tensor(np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)) * 3 + 1
    # batch norm: every unit has mean 0, variance 1 over the batch
    bn = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=["batch_normalization"], **KW)
    layers = norm_layers(bn.q_net)
    assert [type(m) for m in layers] == [nn.BatchNorm1d, nn.BatchNorm1d]
    assert len(norm_layers(bn.q_net_target)) == 2 and not bn.q_net_target.training
    for out in training_outputs(bn, layers, obs):
        th.testing.assert_close(out.mean(0), th.zeros(16), atol=1e-5, rtol=0)
        th.testing.assert_close(out.var(0, unbiased=False), th.ones(16), atol=1e-3, rtol=0)
    # layer norm: every sample has mean 0, variance 1 over its units (PPO's policy and value MLPs)
    ln = SurgicalPPO(
        "MlpPolicy", "CartPole-v1", seed=0, surgeries=["layer_normalization"], n_steps=64, batch_size=32
    )
    layers = norm_layers(ln.policy)
    assert len(layers) == 4 and all(isinstance(m, nn.LayerNorm) for m in layers)
    for out in training_outputs(ln, layers, obs):
        th.testing.assert_close(out.mean(1), th.zeros(64), atol=1e-5, rtol=0)
        th.testing.assert_close(out.var(1, unbiased=False), th.ones(64), atol=1e-3, rtol=0)
    ln.learn(64)
    # group norm: every group of 4 units of every sample
    gn = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=["group_normalization:groups=4"], **KW)
    for out in training_outputs(gn, norm_layers(gn.q_net), obs):
        groups = out.reshape(64, 4, 4)
        th.testing.assert_close(groups.mean(2), th.zeros(64, 4), atol=1e-5, rtol=0)
        th.testing.assert_close(groups.var(2, unbiased=False), th.ones(64, 4), atol=1e-2, rtol=0)  # σ²/(σ²+ε)
    # instance norm on conv features: every channel of every sample over its positions
    env_for(["attention_transfer"])
    cnn_kw = dict(
        buffer_size=100,
        learning_starts=8,
        batch_size=4,
        policy_kwargs=dict(features_extractor_kwargs=dict(features_dim=16), net_arch=[16]),
    )
    inorm = SurgicalDQN("CnnPolicy", IMAGE_ENV, seed=0, surgeries=["instance_normalization"], **cnn_kw)
    layers = norm_layers(inorm.q_net)
    assert [type(m) for m in layers] == [nn.InstanceNorm2d, nn.InstanceNorm2d]  # the 1×1 last conv is skipped
    images = th.as_tensor(np.stack([inorm.observation_space.sample() for _ in range(8)]))
    for out in training_outputs(inorm, layers, inorm.policy.obs_to_tensor(images.numpy())[0]):
        flat = out.flatten(2)
        th.testing.assert_close(flat.mean(2), th.zeros(flat.shape[:2]), atol=1e-4, rtol=0)
    inorm.learn(16)


def test_batch_norm_statistics_reach_the_target_and_survive_save_load(tmp_path):
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["batch_normalization"],
        **dict(KW, target_update_interval=50),
    )
    model.learn(300)
    online, target = norm_layers(model.q_net), norm_layers(model.q_net_target)
    assert online[0].num_batches_tracked > 0 and not th.equal(online[0].running_mean, th.zeros(16))
    assert len(model.batch_norm_stats) == 4 and len(model.batch_norm_stats_target) == 4  # mean, var × 2
    model.train(gradient_steps=3, batch_size=16)
    assert not th.equal(online[0].running_mean, target[0].running_mean)
    model.target_update_interval, model._n_calls = 1, 0
    model._on_step()
    th.testing.assert_close(target[0].running_mean, online[0].running_mean, rtol=0, atol=0)
    # eval mode (predict, rollouts) uses the running statistics: one observation is enough
    action, _ = model.predict(np.zeros(4, dtype=np.float32), deterministic=True)
    model.save(tmp_path / "bn.zip")
    loaded = rls.load(tmp_path / "bn.zip")
    th.testing.assert_close(norm_layers(loaded.q_net)[0].running_var, online[0].running_var, rtol=0, atol=0)
    assert loaded.predict(np.zeros(4, dtype=np.float32), deterministic=True)[0] == action


def test_refusals():
    with pytest.raises(IncompatibleSurgeryError, match=r"instance_normalization: .* no Conv2d layer"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["instance_normalization"], **KW)
    with pytest.raises(IncompatibleSurgeryError, match="16 units cannot be split into groups=3"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["group_normalization:groups=3"], **KW)
